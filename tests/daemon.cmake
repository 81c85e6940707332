# dkimhsmd's own parts, on a fresh token each.
add_executable(test_handler test_handler.c)
target_link_libraries(test_handler PRIVATE dh_daemon dh_testlib)
add_test(NAME daemon_handler COMMAND ${WITH_TOKEN} -- $<TARGET_FILE:test_handler>)
set_tests_properties(daemon_handler PROPERTIES ENVIRONMENT "${TOKEN_TEST_ENV}")

add_test(NAME daemon_e2e COMMAND ${WITH_TOKEN} -- ${CMAKE_CURRENT_SOURCE_DIR}/test_daemon.sh ${CMAKE_BINARY_DIR})
set_tests_properties(daemon_e2e PROPERTIES ENVIRONMENT "${TOKEN_TEST_ENV}" TIMEOUT 120)

add_test(NAME milter_e2e COMMAND ${WITH_TOKEN} -- ${CMAKE_CURRENT_SOURCE_DIR}/test_milter.sh ${CMAKE_BINARY_DIR})
set_tests_properties(milter_e2e PROPERTIES ENVIRONMENT "${TOKEN_TEST_ENV}" TIMEOUT 300)
