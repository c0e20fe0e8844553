# Tests of the Python binding (python/mst), run with Debian's /usr/bin/python3
# (${MST_PYTHON}), which sees python3-numpy, python3-mpi4py and python3-torch.
# Not under sanitizers or a launcher such as valgrind: the interpreter cannot
# load a sanitized libmst, and the C API they exercise is checked there by the
# C tests.
if(MST_ENABLE_SANITIZERS OR MST_TEST_LAUNCHER)
    message(STATUS "Python binding tests not registered (sanitizers or a test launcher)")
    return()
endif()

set(MST_PY_TESTS ${CMAKE_CURRENT_SOURCE_DIR}/python)
# The binding never touches MPI-IO (the C tests cover both components): its
# tests run under the first component only, which halves their time.
set(MST_PY_SAVED_IO_COMPONENTS ${MST_IO_COMPONENTS})
list(GET MST_IO_COMPONENTS 0 MST_IO_COMPONENTS)
# The tests load the libmst just built, wherever the build directory is.
set(MST_PY_ENV "MST_LIBRARY=$<TARGET_FILE:mst>;PYTHONDONTWRITEBYTECODE=1")

foreach(np 1 2 3 4)
    # the C test case "mixed" (all 22 dtypes) against the oracle's file, which
    # the C writer's save.mixed tests match byte for byte
    mst_add_mpi_test(python.mixed ${np}
        COMMAND ${MST_PYTHON} ${MST_PY_TESTS}/t_py_save.py mixed
                ${MST_TEST_WORK}/mixed.spec.json ${MST_TEST_WORK}/mixed.expected.safetensors
                ${MST_TEST_WORK}/@T@.safetensors
        FIXTURES expected_mixed ENVIRONMENT ${MST_PY_ENV} LABELS python TIMEOUT 300)
    foreach(mode numpy slices errors torch)
        mst_add_mpi_test(python.${mode} ${np}
            COMMAND ${MST_PYTHON} ${MST_PY_TESTS}/t_py_save.py ${mode} ${MST_TEST_WORK}/@T@
            ENVIRONMENT ${MST_PY_ENV} LABELS python TIMEOUT 300)
    endforeach()
    foreach(io ${MST_IO_COMPONENTS})
        # exits 77 when torch is not installed: reported as skipped
        set_tests_properties(python.torch.np${np}.${io} PROPERTIES SKIP_RETURN_CODE 77)
    endforeach()
endforeach()

# Finding libmst: installed by cmake --install, from MST_LIBRARY, a clear error when absent.
add_test(NAME python.library
    COMMAND ${MST_PYTHON} ${MST_PY_TESTS}/t_py_library.py ${PROJECT_BINARY_DIR}
            ${MST_TEST_WORK}/python.library)
set_tests_properties(python.library PROPERTIES
    ENVIRONMENT "${MST_MPI_ENV};MST_LIBRARY_BUILT=$<TARGET_FILE:mst>;CMAKE_COMMAND=${CMAKE_COMMAND};MPIEXEC=${MPIEXEC_EXECUTABLE}"
    TIMEOUT 300 LABELS "python;install" PROCESSORS 2)

# libmst and mpi4py built for different MPIs: a clear MPIMismatch, not a crash (fake inputs).
add_test(NAME python.mpi_flavour COMMAND ${MST_PYTHON} ${MST_PY_TESTS}/t_py_mpi_flavour.py ${MST_TEST_WORK}/python.mpi_flavour)
set_tests_properties(python.mpi_flavour PROPERTIES ENVIRONMENT "${MST_MPI_ENV};${MST_PY_ENV}" TIMEOUT 120 LABELS python)

# The examples: a tensor-parallel model saved from N ranks and loaded back.
foreach(np 1 2 4)
    mst_add_mpi_test(python.example.numpy ${np}
        COMMAND ${MST_PYTHON} ${PROJECT_SOURCE_DIR}/scripts/examples/tp_save.py --numpy
                ${MST_TEST_WORK}/@T@.safetensors
        ENVIRONMENT ${MST_PY_ENV} LABELS "python;example" TIMEOUT 300)
    mst_add_mpi_test(python.example.torch ${np}
        COMMAND ${MST_PYTHON} ${PROJECT_SOURCE_DIR}/scripts/examples/tp_save.py
                ${MST_TEST_WORK}/@T@.safetensors
        ENVIRONMENT ${MST_PY_ENV} LABELS "python;example" TIMEOUT 300)
    foreach(io ${MST_IO_COMPONENTS})
        set_tests_properties(python.example.torch.np${np}.${io} PROPERTIES SKIP_RETURN_CODE 77)
    endforeach()
endforeach()

set(MST_IO_COMPONENTS ${MST_PY_SAVED_IO_COMPONENTS})
