# How tests are registered (included by tests/CMakeLists.txt): three helpers
# below, and mst_add_test_program (at the end) to build a C test program.
#
#   mst_add_mpi_test(NAME NP COMMAND program args... [WRAPPER cmd...] <common options>)
#       A test program run under mpiexec at NP ranks: NAME.npNP.<io> for each
#       MPI-IO component of MST_IO_COMPONENTS (OMPI_MCA_io=<io>). WRAPPER goes
#       in front of mpiexec (tests/common/with_dirs.sh; exit 77 = skipped).
#
#   mst_add_test(NAME [NP n] COMMAND args... <common options>)
#       Any other test: unit programs and every script (which starts mpirun
#       itself when it needs one). With NP: NAME.npN.<io> for each component,
#       as above, N processors; without: one test NAME.
#       The environment holds the tools' paths (MST_MERGE, MST_INSPECT,
#       MST_CLEAN, MST_BENCH, MST_EXAMPLE, MST_TOOL_LAUNCHER, MPIEXEC), what
#       mpirun needs (MST_MPI_ENV) and WORK, a directory of the test's own
#       (build/tests/work/<test name>, not created).
#
#   mst_add_fixture(NAME SETUP fixture COMMAND args... [REQUIRES fixture...] [TIMEOUT s] [LABELS l...])
#       A generator of test inputs (the oracle's expected files, the reader
#       corpus): a CTest fixture setup, label "fixture". CTest runs it before
#       any selected test that REQUIRES its fixture (FIXTURES in the helpers
#       above), and only then.
#
# Common options: ENVIRONMENT var=value... TIMEOUT s (default 300) LABELS l...
#   PROCESSORS n FIXTURES f... (required) RESOURCE_LOCK r SKIP_RETURN_CODE c
#   QUICK FULL_ONLY.
# "@T@" in COMMAND, WRAPPER and ENVIRONMENT becomes the test's name.
#
# Tiers. Label "quick" (scripts/test.sh --quick, ctest -L quick, under 5
# minutes on 2 cores): every test at MST_QUICK_NP ranks under the first
# component (ompio), plus those registered with QUICK (under the first
# component only), but none labelled slow nor registered with FULL_ONLY (for
# groups whose cheaper members stand for them in the quick tier). The whole
# suite is every test; label "slow" marks the 2 GiB tests, the fault sweep and
# the crash trials.

set(MST_QUICK_NP 2)
list(GET MST_IO_COMPONENTS 0 MST_QUICK_IO)

set(_mst_common_opts TIMEOUT PROCESSORS RESOURCE_LOCK SKIP_RETURN_CODE NP)
set(_mst_common_lists COMMAND WRAPPER LABELS FIXTURES ENVIRONMENT)

# Properties shared by both helpers, for test t at np ranks under io ("" when
# not per component); reads the caller's parsed A_* options.
function(_mst_test_properties t np io env)
    if(NOT A_TIMEOUT)
        set(A_TIMEOUT 300)
    endif()
    set(labels ${A_LABELS})
    if(io)
        list(PREPEND labels mpi ${io})
        list(APPEND env OMPI_MCA_io=${io})
    endif()
    if(NOT A_FULL_ONLY AND NOT "slow" IN_LIST labels AND (NOT io OR io STREQUAL MST_QUICK_IO)
       AND (A_QUICK OR (np AND io AND np EQUAL MST_QUICK_NP)))
        list(APPEND labels quick)
    endif()
    list(APPEND env ${A_ENVIRONMENT})
    string(REPLACE "@T@" "${t}" env "${env}")
    if(A_PROCESSORS)
        set(procs ${A_PROCESSORS})
    elseif(np)
        set(procs ${np})
    else()
        set(procs 1)
    endif()
    set_tests_properties(${t} PROPERTIES ENVIRONMENT "${env}" PROCESSORS ${procs}
        TIMEOUT ${A_TIMEOUT} LABELS "${labels}")
    if(A_FIXTURES)
        set_tests_properties(${t} PROPERTIES FIXTURES_REQUIRED "${A_FIXTURES}")
    endif()
    if(A_RESOURCE_LOCK)
        set_tests_properties(${t} PROPERTIES RESOURCE_LOCK "${A_RESOURCE_LOCK}")
    endif()
    if(A_SKIP_RETURN_CODE)
        set_tests_properties(${t} PROPERTIES SKIP_RETURN_CODE ${A_SKIP_RETURN_CODE})
    endif()
endfunction()

function(mst_add_mpi_test name np)
    cmake_parse_arguments(A "QUICK;FULL_ONLY" "${_mst_common_opts}" "${_mst_common_lists}" ${ARGN})
    if(A_WRAPPER AND NOT A_SKIP_RETURN_CODE)
        set(A_SKIP_RETURN_CODE 77)
    endif()
    foreach(io ${MST_IO_COMPONENTS})
        set(t ${name}.np${np}.${io})
        string(REPLACE "@T@" "${t}" args "${A_COMMAND}")
        string(REPLACE "@T@" "${t}" wrapper "${A_WRAPPER}")
        add_test(NAME ${t}
            COMMAND ${wrapper} ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} ${MPIEXEC_PREFLAGS}
                    ${MST_TEST_LAUNCHER} ${args} ${MPIEXEC_POSTFLAGS}
            WORKING_DIRECTORY ${MST_TEST_WORK})
        _mst_test_properties(${t} ${np} ${io} "${MST_MPI_ENV}")
    endforeach()
endfunction()

function(mst_add_test name)
    cmake_parse_arguments(A "QUICK;FULL_ONLY" "${_mst_common_opts}" "${_mst_common_lists}" ${ARGN})
    if(A_NP)
        foreach(io ${MST_IO_COMPONENTS})
            _mst_add_script_test(${name}.np${A_NP}.${io} ${A_NP} ${io})
        endforeach()
    else()
        _mst_add_script_test(${name} "" "")
    endif()
endfunction()

function(_mst_add_script_test t np io)
    string(REPLACE "@T@" "${t}" args "${A_COMMAND}")
    add_test(NAME ${t} COMMAND ${args} WORKING_DIRECTORY ${MST_TEST_WORK})
    _mst_test_properties(${t} "${np}" "${io}"
        "${MST_MPI_ENV};${MST_TOOL_ENV};WORK=${MST_TEST_WORK}/@T@")
endfunction()

function(mst_add_fixture name)
    cmake_parse_arguments(A "" "SETUP;TIMEOUT" "COMMAND;REQUIRES;LABELS" ${ARGN})
    if(NOT A_TIMEOUT)
        set(A_TIMEOUT 300)
    endif()
    set(labels fixture ${A_LABELS})
    add_test(NAME ${name} COMMAND ${A_COMMAND} WORKING_DIRECTORY ${MST_TEST_WORK})
    set_tests_properties(${name} PROPERTIES FIXTURES_SETUP ${A_SETUP} TIMEOUT ${A_TIMEOUT}
        LABELS "${labels}")
    if(A_REQUIRES)
        set_tests_properties(${name} PROPERTIES FIXTURES_REQUIRED "${A_REQUIRES}")
    endif()
endfunction()

# mst_add_test_program(NAME SOURCES...): a C test program linked to libmst,
# with the project's warnings and tests/common (t_util.h) on its include path.
function(mst_add_test_program name)
    add_executable(${name} ${ARGN})
    target_link_libraries(${name} PRIVATE mst::mst)
    target_compile_options(${name} PRIVATE ${MST_WARNING_FLAGS})
    target_include_directories(${name} PRIVATE ${MST_TESTS}/common)
endfunction()
