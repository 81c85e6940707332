# Programs end to end, on a fresh token each.
set(BIN_DIR ${CMAKE_BINARY_DIR})

add_test(NAME e2e_sign_verify
         COMMAND ${WITH_TOKEN} -- ${CMAKE_CURRENT_SOURCE_DIR}/test_sign_e2e.sh ${BIN_DIR})
add_test(NAME e2e_bad_input
         COMMAND ${WITH_TOKEN} -- ${CMAKE_CURRENT_SOURCE_DIR}/test_bad_input.sh ${BIN_DIR})
add_test(NAME e2e_keyctl
         COMMAND ${WITH_TOKEN} -- ${CMAKE_CURRENT_SOURCE_DIR}/test_keyctl.sh ${BIN_DIR})
add_test(NAME e2e_rfc8463
         COMMAND ${WITH_TOKEN} -- ${CMAKE_CURRENT_SOURCE_DIR}/test_rfc8463_sign.sh ${BIN_DIR}
                 ${TESTDATA} ${SHARED_TESTDATA})
set_tests_properties(e2e_sign_verify e2e_bad_input e2e_keyctl e2e_rfc8463
                     PROPERTIES SKIP_RETURN_CODE 77 ENVIRONMENT "${TOKEN_TEST_ENV}")

add_executable(test_conf test_conf.c)
target_link_libraries(test_conf PRIVATE dh_conf dh_testlib)
add_test(NAME conf COMMAND test_conf)

add_executable(test_keystore test_keystore.c)
target_link_libraries(test_keystore PRIVATE dh_keystore dh_testlib PkgConfig::SQLITE)
add_test(NAME keystore COMMAND test_keystore)

add_executable(test_kat test_kat.c)
target_link_libraries(test_kat PRIVATE dh_hsm dh_dkim dh_testlib)
add_test(NAME kat_token COMMAND ${WITH_TOKEN} -- $<TARGET_FILE:test_kat> ${TESTDATA} ${SHARED_TESTDATA})
set_tests_properties(kat_token PROPERTIES ENVIRONMENT "${TOKEN_TEST_ENV}")
