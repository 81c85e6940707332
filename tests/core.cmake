# Tests of daemon/workers.c and daemon/metrics.c, and a smoke run of the
# token ceiling benchmark (bench/token_ceiling.c).
set(CORE_TESTS_DIR ${CMAKE_CURRENT_LIST_DIR})

add_executable(test_metrics ${CORE_TESTS_DIR}/test_metrics.c)
target_link_libraries(test_metrics dh_metrics dh_testlib Threads::Threads)
set(METRICS_CASES empty counters gauges histogram registration errors series_cap threads
    render_appends)
foreach(case IN LISTS METRICS_CASES)
  add_test(NAME metrics.${case} COMMAND test_metrics ${case})
endforeach()

# Each worker case on a fresh token of its own (lib/with-token.sh).
add_executable(test_workers ${CORE_TESTS_DIR}/test_workers.c)
target_link_libraries(test_workers dh_workers dh_hsm dh_testlib PkgConfig::CRYPTO)
set(WORKERS_CASES roundtrip single queue_limit stop destroyed_key bad_args)
foreach(case IN LISTS WORKERS_CASES)
  add_test(NAME workers.${case} COMMAND ${WITH_TOKEN} -- $<TARGET_FILE:test_workers> ${case})
  # TOKEN_TEST_ENV (tests/CMakeLists.txt): the SoftHSM Ed25519 leak suppression.
  set_tests_properties(workers.${case} PROPERTIES ENVIRONMENT "${TOKEN_TEST_ENV}"
                       SKIP_RETURN_CODE 77 TIMEOUT 300)
endforeach()

# The token ceiling benchmark (built in bench/bench.cmake): one second per
# phase on a fresh token, both key types; the output must carry the figures.
add_test(NAME bench_token_ceiling_smoke
         COMMAND ${WITH_TOKEN} -- sh -c
                 "\"$0\" --seconds 1 --threads 2 --type both > \"$DKIMHSM_TEST_DIR/out\" && cat \"$DKIMHSM_TEST_DIR/out\" && test \"$(grep -Ec '^pool .*/s  pool/raw [0-9.]+$' \"$DKIMHSM_TEST_DIR/out\")\" = 2"
                 $<TARGET_FILE:token_ceiling>)
set_tests_properties(bench_token_ceiling_smoke PROPERTIES ENVIRONMENT "${TOKEN_TEST_ENV}"
                     TIMEOUT 300)
