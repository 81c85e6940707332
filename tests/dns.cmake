# dns/ (dkim-keyctl check, RFC 2136 publishing) against a real knotd of its
# own: lib/with-dns.sh serves tests/data/dns/*.zone on 127.0.0.1 and a free
# port, with a TSIG key for updates. Skipped (77) when knotd is absent.
set(WITH_DNS ${CMAKE_CURRENT_SOURCE_DIR}/lib/with-dns.sh)
set(DNS_ZONES ${CMAKE_CURRENT_SOURCE_DIR}/data/dns)

add_executable(test_dns test_dns.c)
target_link_libraries(test_dns PRIVATE dh_dns dh_testlib)
add_test(NAME dns COMMAND ${WITH_DNS} ${DNS_ZONES} -- $<TARGET_FILE:test_dns>)
set_tests_properties(dns PROPERTIES SKIP_RETURN_CODE 77 LABELS dns)

# dkim-keyctl check end to end: keys on a fresh token, records published by
# RFC 2136 update into the test zone.
add_test(NAME e2e_check
         COMMAND ${WITH_TOKEN} -- ${WITH_DNS} ${DNS_ZONES} --
                 ${CMAKE_CURRENT_SOURCE_DIR}/test_check.sh ${CMAKE_BINARY_DIR})
set_tests_properties(e2e_check PROPERTIES SKIP_RETURN_CODE 77 LABELS dns
                     ENVIRONMENT "${TOKEN_TEST_ENV}")

# What dn_check makes of DNS answers (tests/fuzz/fuzz_dnscheck.c): packets
# from the input through the resolver seam, run by the deterministic driver.
# No server needed.
pkg_check_modules(LDNS REQUIRED IMPORTED_TARGET ldns)
add_executable(fuzz_dnscheck_driver fuzz/fuzz_dnscheck.c fuzz/driver.c)
target_link_libraries(fuzz_dnscheck_driver PRIVATE dh_dns PkgConfig::LDNS)
add_test(NAME dns_fuzz_check COMMAND fuzz_dnscheck_driver)
set_tests_properties(dns_fuzz_check PROPERTIES LABELS dns)
