# tests of the agent protocol (daemon/proto.h) and its client (daemon/client.h).

add_executable(test_proto test_proto.c)
target_link_libraries(test_proto PRIVATE dh_testlib dh_proto)
add_test(NAME proto COMMAND test_proto)

add_executable(test_client test_client.c)
target_link_libraries(test_client PRIVATE dh_testlib dh_agentc Threads::Threads)
add_test(NAME proto_client COMMAND test_client)
set_tests_properties(proto proto_client PROPERTIES LABELS proto)
set_tests_properties(proto_client PROPERTIES TIMEOUT 120)

# The frame decoder's fuzz target: run in ctest through the deterministic
# driver (tests/fuzz/driver.c), and as a libFuzzer binary with DKIMHSM_FUZZ
# (the option is declared in dkim.cmake).
add_executable(fuzz_proto_driver fuzz/fuzz_proto.c fuzz/driver.c)
target_link_libraries(fuzz_proto_driver PRIVATE dh_proto)
add_test(NAME proto_fuzz COMMAND fuzz_proto_driver)
set_tests_properties(proto_fuzz PROPERTIES LABELS proto)

if(DKIMHSM_FUZZ)
  # The sources are compiled into the fuzzer so libFuzzer sees their coverage.
  add_executable(fuzz_proto fuzz/fuzz_proto.c ${CMAKE_SOURCE_DIR}/daemon/proto.c
                            ${CMAKE_SOURCE_DIR}/common/buf.c ${CMAKE_SOURCE_DIR}/common/err.c)
  target_compile_options(fuzz_proto PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_options(fuzz_proto PRIVATE -fsanitize=fuzzer,address,undefined)
endif()

# The milter's cache of LOOKUP answers (daemon/lookup_cache.h).
add_executable(test_lookup_cache test_lookup_cache.c ${CMAKE_SOURCE_DIR}/daemon/lookup_cache.c)
target_link_libraries(test_lookup_cache PRIVATE dh_testlib dh_agentc Threads::Threads)
add_test(NAME proto_lookup_cache COMMAND test_lookup_cache)
set_tests_properties(proto_lookup_cache PROPERTIES LABELS proto)
