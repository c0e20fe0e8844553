# The reader: corpus of malformed and valid files, API tests, fuzz replay,
# and (MST_ENABLE_FUZZING with clang) the libFuzzer target.

# The core sources the fuzz target needs, compiled into it so that libFuzzer's
# coverage instrumentation reaches them.
set(MST_FUZZ_SOURCES
    ${PROJECT_SOURCE_DIR}/src/mst_buf.c ${PROJECT_SOURCE_DIR}/src/mst_core.c
    ${PROJECT_SOURCE_DIR}/src/mst_dtype.c ${PROJECT_SOURCE_DIR}/src/mst_err.c
    ${PROJECT_SOURCE_DIR}/src/mst_header.c ${PROJECT_SOURCE_DIR}/src/mst_utf8.c)

# Replay of the saved fuzz corpus: an ordinary program (gcc, no libFuzzer).
add_executable(fuzz_replay fuzz_replay.c fuzz_header.c $<TARGET_OBJECTS:mst_core>)
target_link_libraries(fuzz_replay PRIVATE mst_core)
target_compile_options(fuzz_replay PRIVATE ${MST_WARNING_FLAGS})
add_test(NAME reader.fuzz_replay
    COMMAND ${MST_TEST_LAUNCHER} $<TARGET_FILE:fuzz_replay> ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus)
set_tests_properties(reader.fuzz_replay PROPERTIES LABELS "unit;reader;fuzz" TIMEOUT 600)

if(MST_ENABLE_FUZZING)
    if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
        message(FATAL_ERROR "MST_ENABLE_FUZZING needs clang (CC=clang-14)")
    endif()
    add_executable(fuzz_header fuzz_header.c ${MST_FUZZ_SOURCES})
    target_include_directories(fuzz_header PRIVATE ${PROJECT_SOURCE_DIR}/include
                               ${PROJECT_SOURCE_DIR}/src ${MPI_C_INCLUDE_DIRS})
    target_compile_definitions(fuzz_header PRIVATE _GNU_SOURCE)
    target_compile_options(fuzz_header PRIVATE -fsanitize=fuzzer,address,undefined
                           -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g
                           -fprofile-instr-generate -fcoverage-mapping)
    target_link_options(fuzz_header PRIVATE -fsanitize=fuzzer,address,undefined
                        -fprofile-instr-generate)
endif()
