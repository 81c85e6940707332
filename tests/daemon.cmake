# dkimhsmd's own parts, on a fresh token each.
add_executable(test_handler test_handler.c)
target_link_libraries(test_handler PRIVATE dh_daemon dh_testlib)
add_test(NAME daemon_handler COMMAND ${WITH_TOKEN} -- $<TARGET_FILE:test_handler>)
set_tests_properties(daemon_handler PROPERTIES ENVIRONMENT "${TOKEN_TEST_ENV}")

add_test(NAME daemon_e2e COMMAND ${WITH_TOKEN} -- ${CMAKE_CURRENT_SOURCE_DIR}/test_daemon.sh ${CMAKE_BINARY_DIR})
set_tests_properties(daemon_e2e PROPERTIES ENVIRONMENT "${TOKEN_TEST_ENV}" TIMEOUT 120)

add_test(NAME milter_e2e COMMAND ${WITH_TOKEN} -- ${CMAKE_CURRENT_SOURCE_DIR}/test_milter.sh ${CMAKE_BINARY_DIR})
set_tests_properties(milter_e2e PROPERTIES ENVIRONMENT "${TOKEN_TEST_ENV}" TIMEOUT 300)

# Token failure under load: sessions closed, logged out, token removed or
# absent (through the test shim, tests/fault/p11shim.c, built in hsm.cmake),
# and SoftHSM's token directory moved away and back.
add_test(NAME token_fault_e2e
         COMMAND ${WITH_TOKEN} -- ${CMAKE_CURRENT_SOURCE_DIR}/test_token_fault.sh ${CMAKE_BINARY_DIR}
                 $<TARGET_FILE:dkimhsm_p11shim>)
set_tests_properties(token_fault_e2e PROPERTIES ENVIRONMENT "${TOKEN_TEST_ENV}" TIMEOUT 300)

# The request handler's fuzz target, run by the deterministic driver
# (tests/fuzz/driver.c) on a fresh token.
add_executable(fuzz_handler_driver fuzz/fuzz_handler.c fuzz/driver.c)
target_link_libraries(fuzz_handler_driver PRIVATE dh_daemon)
add_test(NAME daemon_fuzz_handler COMMAND ${WITH_TOKEN} -- $<TARGET_FILE:fuzz_handler_driver>)
set_tests_properties(daemon_fuzz_handler PROPERTIES ENVIRONMENT "${TOKEN_TEST_ENV}" TIMEOUT 300)
