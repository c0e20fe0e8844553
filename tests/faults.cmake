# Faults and crashes never cost a checkpoint (issue 5): fault injection through
# an LD_PRELOAD shim, kill -9 trials, concurrent saves, mst-clean.
add_library(mst_fault_shim SHARED fault_shim.c)
target_link_libraries(mst_fault_shim PRIVATE ${CMAKE_DL_LIBS})
set_target_properties(mst_fault_shim PROPERTIES PREFIX "" OUTPUT_NAME fault_shim)

add_executable(t_faults t_faults.c)
target_link_libraries(t_faults PRIVATE mst::mst ${CMAKE_DL_LIBS})
target_compile_options(t_faults PRIVATE ${MST_WARNING_FLAGS})
target_compile_definitions(t_faults PRIVATE _GNU_SOURCE)

# Under ASan the sanitizer runtime must come first in the preload list
# (libasan.so:fault_shim.so); the shim's open/write/sync/rename/close wrappers
# then sit behind ASan's interceptors and work as usual, but ASan owns malloc,
# so the allocation-failure case of faults.agree is skipped (and says so).
# A full sanitizer sweep takes ~12 s per injected fault; FAULT_SWEEP_RANKS=0
# (environment) limits it to one rank's calls.
set(MST_LIBASAN "")
if(MST_ENABLE_SANITIZERS)
    execute_process(COMMAND ${CMAKE_C_COMPILER} -print-file-name=libasan.so
                    OUTPUT_VARIABLE MST_LIBASAN OUTPUT_STRIP_TRAILING_WHITESPACE)
    set(MST_FAULT_PRELOAD_ENV "${MST_LIBASAN}:$<TARGET_FILE:mst_fault_shim>")
else()
    set(MST_FAULT_PRELOAD_ENV "$<TARGET_FILE:mst_fault_shim>")
endif()

# Every file operation of a 4-rank save, failed in turn, under each component:
# one mpirun per injected fault (OMPIO keeps a failed collective write's state
# for the life of the process, so faults cannot share one).
foreach(io ${MST_IO_COMPONENTS})
    add_test(NAME faults.sweep.np4.${io}
        COMMAND ${MST_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/fault_sweep.py ${MPIEXEC_EXECUTABLE}
                $<TARGET_FILE:t_faults> $<TARGET_FILE:mst_fault_shim>
                ${MST_TEST_WORK}/faults.sweep.${io} 4)
    set_tests_properties(faults.sweep.np4.${io} PROPERTIES
        ENVIRONMENT "${MST_MPI_ENV};OMPI_MCA_io=${io};MST_ASAN_RUNTIME=${MST_LIBASAN}"
        PROCESSORS 4 TIMEOUT 900 LABELS "mpi;${io};faults;slow")
endforeach()

# kill -9 of one rank or of all ranks at random moments of a save (25 trials
# under each component: 50 in all), mst-clean's decisions, and two jobs
# saving to one target at once.
set(MST_CRASH_TRIALS 25 CACHE STRING "kill -9 trials per MPI-IO component")
foreach(io ${MST_IO_COMPONENTS})
    set(n ${MST_CRASH_TRIALS})
    add_test(NAME faults.crash.np4.${io}
        COMMAND ${MST_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/crash_trials.py ${MPIEXEC_EXECUTABLE}
                $<TARGET_FILE:t_faults> $<TARGET_FILE:mst-clean>
                ${MST_TEST_WORK}/faults.crash.${io} ${n})
    set_tests_properties(faults.crash.np4.${io} PROPERTIES
        ENVIRONMENT "${MST_MPI_ENV};OMPI_MCA_io=${io}"
        PROCESSORS 4 TIMEOUT 900 LABELS "mpi;${io};faults;slow")
endforeach()

# Errors one rank finds before the exchange (bad dtype, NULL data, allocation
# failure) are agreed: every rank returns them, nothing hangs.
foreach(np 1 3 4)
    mst_add_mpi_test(faults.agree ${np}
        WRAPPER ${CMAKE_CURRENT_SOURCE_DIR}/with_dirs.sh ${MST_TEST_WORK}/@T@ --
        COMMAND ${CMAKE_COMMAND} -E env "LD_PRELOAD=${MST_FAULT_PRELOAD_ENV}"
                $<TARGET_FILE:t_faults> agree ${MST_TEST_WORK}/@T@
        LABELS faults TIMEOUT 120)
endforeach()
