# The key lifecycle: audit/ (no token) and lifecycle/ (on a fresh SoftHSM
# token per case, lib/with-token.sh).
set(LIFE_TESTS_DIR ${CMAKE_CURRENT_LIST_DIR})

add_executable(test_audit ${LIFE_TESTS_DIR}/test_audit.c)
target_link_libraries(test_audit PRIVATE dh_audit dh_testlib PkgConfig::SQLITE Threads::Threads)
add_test(NAME audit COMMAND test_audit)

add_executable(test_lifecycle ${LIFE_TESTS_DIR}/test_lifecycle.c)
target_link_libraries(test_lifecycle PRIVATE dh_lifecycle dh_testlib)
set(LIFE_CASES table legal_path activate_seen illegal force revoke_destroy records expire rotate_alternate
    rotate_two_algs rotate_publish_wait rotate_date)
foreach(case IN LISTS LIFE_CASES)
  add_test(NAME life.${case} COMMAND ${WITH_TOKEN} -- $<TARGET_FILE:test_lifecycle> ${case})
  set_tests_properties(life.${case} PROPERTIES ENVIRONMENT "${TOKEN_TEST_ENV}"
                       SKIP_RETURN_CODE 77)
endforeach()

# The lifecycle against a real DNS server (knotd): activation and rotation
# only once the records are served. Skipped (77) without knotd.
add_test(NAME e2e_life_dns
         COMMAND ${WITH_TOKEN} -- ${WITH_DNS} ${DNS_ZONES} --
                 ${LIFE_TESTS_DIR}/test_life_dns.sh ${CMAKE_BINARY_DIR})
set_tests_properties(e2e_life_dns PROPERTIES SKIP_RETURN_CODE 77 LABELS dns
                     ENVIRONMENT "${TOKEN_TEST_ENV}")
