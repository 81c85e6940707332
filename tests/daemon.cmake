# dkimhsmd's own parts, on a fresh token each.
add_executable(test_handler test_handler.c)
target_link_libraries(test_handler PRIVATE dh_daemon dh_testlib)
add_test(NAME daemon_handler COMMAND ${WITH_TOKEN} -- $<TARGET_FILE:test_handler>)
set_tests_properties(daemon_handler PROPERTIES ENVIRONMENT "${TOKEN_TEST_ENV}")

add_test(NAME daemon_e2e COMMAND ${WITH_TOKEN} -- ${CMAKE_CURRENT_SOURCE_DIR}/test_daemon.sh ${CMAKE_BINARY_DIR})
set_tests_properties(daemon_e2e PROPERTIES ENVIRONMENT "${TOKEN_TEST_ENV}" TIMEOUT 120)

# The management API (docs/API.md) on dkimhsmd, DNS from a knotd of its own.
add_test(NAME daemon_api
         COMMAND ${WITH_TOKEN} -- ${WITH_DNS} ${DNS_ZONES} --
                 ${CMAKE_CURRENT_SOURCE_DIR}/test_api.sh ${CMAKE_BINARY_DIR})
set_tests_properties(daemon_api PROPERTIES ENVIRONMENT "${TOKEN_TEST_ENV}" TIMEOUT 300
                     SKIP_RETURN_CODE 77 LABELS dns)

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
add_executable(fuzz_handler_driver fuzz/fuzz_handler.c fuzz/token_env.c fuzz/driver.c)
target_link_libraries(fuzz_handler_driver PRIVATE dh_daemon)
add_test(NAME daemon_fuzz_handler COMMAND ${WITH_TOKEN} -- $<TARGET_FILE:fuzz_handler_driver>)
set_tests_properties(daemon_fuzz_handler PROPERTIES ENVIRONMENT "${TOKEN_TEST_ENV}" TIMEOUT 300)

# A whole key rotation by dkimhsmd's lifecycle timer against a knotd of its
# own (RFC 2136 publishing with TSIG), the milter signing under load all along;
# every message verified by dkimpy with the record DNS served when it was signed.
add_test(NAME daemon_rotation
         COMMAND ${WITH_TOKEN} -- ${WITH_DNS} ${DNS_ZONES} --
                 ${CMAKE_CURRENT_SOURCE_DIR}/test_rotation.sh ${CMAKE_BINARY_DIR})
set_tests_properties(daemon_rotation PROPERTIES ENVIRONMENT "${TOKEN_TEST_ENV}" TIMEOUT 300
                     SKIP_RETURN_CODE 77 LABELS dns)

# DNS unreachable: the lifecycle timer and the management API wait on it from
# threads of their own, and signing goes on (a black-hole dns_server; see the
# script's header).
add_test(NAME daemon_dns_down
         COMMAND ${WITH_TOKEN} -- ${CMAKE_CURRENT_SOURCE_DIR}/test_dns_down.sh ${CMAKE_BINARY_DIR})
set_tests_properties(daemon_dns_down PROPERTIES ENVIRONMENT "${TOKEN_TEST_ENV}" TIMEOUT 120)

# The management API's fuzz target (routes, queries, JSON bodies, lifecycle
# calls), run by the deterministic driver on a fresh token.
add_executable(fuzz_api_driver fuzz/fuzz_api.c fuzz/token_env.c fuzz/driver.c)
target_link_libraries(fuzz_api_driver PRIVATE dh_daemon dh_lifecycle)
add_test(NAME daemon_fuzz_api COMMAND ${WITH_TOKEN} -- $<TARGET_FILE:fuzz_api_driver>)
set_tests_properties(daemon_fuzz_api PROPERTIES ENVIRONMENT "${TOKEN_TEST_ENV}" TIMEOUT 300)
