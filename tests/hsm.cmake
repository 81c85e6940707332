# tests of the module hsm/ - each case runs in a process of its own with a
# fresh SoftHSM token (lib/with-token.sh).
set(HSM_TESTS_DIR ${CMAKE_CURRENT_LIST_DIR})

add_executable(test_hsm ${HSM_TESTS_DIR}/test_hsm.c)
target_link_libraries(test_hsm dh_hsm dh_testlib)

# Test helper for shell tests: generate / import / sign through hsm/.
add_executable(hsm_tool ${HSM_TESTS_DIR}/hsm_tool.c)
target_link_libraries(hsm_tool dh_hsm)

# TOKEN_TEST_ENV (tests/CMakeLists.txt) carries the SoftHSM leak suppression.
# The threads case signs with RSA and an imported Ed25519 key, which do not
# leak, and keeps ASan's fast unwinder for realistic timings.
set(HSM_TEST_ENV_FAST
    "DKIMHSM_SHARED_TESTDATA=${SHARED_TESTDATA}"
    "LSAN_OPTIONS=suppressions=${HSM_TESTS_DIR}/lsan.supp:print_suppressions=0")

set(HSM_CASES generate_rsa generate_ed25519 rsa_sizes custody import import_refused
    import_rfc8463 wrong_pin missing_token pin_mode threads session_loss session_loss_warm_pool destroy uri ckr_name)
foreach(case IN LISTS HSM_CASES)
  add_test(NAME hsm.${case} COMMAND ${WITH_TOKEN} -- $<TARGET_FILE:test_hsm> ${case})
endforeach()
# Fork before hsm_open: SoftHSM told to reset on fork, as a real HSM would.
add_test(NAME hsm.fork COMMAND ${WITH_TOKEN} --reset-on-fork -- $<TARGET_FILE:test_hsm> fork)
add_test(NAME hsm.engine_interop
         COMMAND ${WITH_TOKEN} -- sh ${HSM_TESTS_DIR}/test_engine_interop.sh $<TARGET_FILE:hsm_tool>)

foreach(t IN LISTS HSM_CASES ITEMS fork engine_interop)
  set_tests_properties(hsm.${t} PROPERTIES ENVIRONMENT "${TOKEN_TEST_ENV}" SKIP_RETURN_CODE 77
                       TIMEOUT 300)
endforeach()
set_tests_properties(hsm.threads PROPERTIES ENVIRONMENT "${HSM_TEST_ENV_FAST}")

# Token failure injection: a PKCS#11 shim (never installed) that forwards to
# SoftHSM and, on request, closes our sessions, logs us out or plays a removed
# token (tests/fault/p11shim.c); and the token lost and found again through
# hsm_sign_digest (test_hsm_fault.c), via the shim or by moving SoftHSM's
# token directory away and back.
add_library(dkimhsm_p11shim MODULE ${HSM_TESTS_DIR}/fault/p11shim.c)
target_link_libraries(dkimhsm_p11shim PRIVATE PkgConfig::P11KIT Threads::Threads ${CMAKE_DL_LIBS})
set_target_properties(dkimhsm_p11shim PROPERTIES PREFIX "")

add_executable(test_hsm_fault ${HSM_TESTS_DIR}/test_hsm_fault.c)
target_link_libraries(test_hsm_fault dh_hsm dh_testlib)
add_dependencies(test_hsm_fault dkimhsm_p11shim)

set(HSM_FAULT_CASES closeall_logout removed notpresent probe pin_changed moved moved_all storm)
foreach(case IN LISTS HSM_FAULT_CASES)
  add_test(NAME hsm_fault.${case}
           COMMAND ${WITH_TOKEN} -- env DKIMHSM_SHIM_MODULE=$<TARGET_FILE:dkimhsm_p11shim>
                   $<TARGET_FILE:test_hsm_fault> ${case})
  set_tests_properties(hsm_fault.${case} PROPERTIES ENVIRONMENT "${TOKEN_TEST_ENV}"
                       SKIP_RETURN_CODE 77 TIMEOUT 300)
endforeach()
