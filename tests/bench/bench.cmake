# benchmark programs

# ---- milterload: milter load generator playing the MTA (Postfix-like) ----
# The smoke test runs OpenDKIM under it briefly; every sampled result must
# verify with dkimpy (exit 77, skipped, without opendkim or dkimpy). The full
# baseline is bench/opendkim_baseline.sh with its default options.
add_executable(milterload ${CMAKE_CURRENT_LIST_DIR}/milterload.c)
target_link_libraries(milterload Threads::Threads)
add_test(NAME bench_milterload_opendkim_smoke
         COMMAND ${CMAKE_CURRENT_LIST_DIR}/opendkim_baseline.sh $<TARGET_FILE:milterload>
                 -c 4 -n 200 -t 60 --sample 5 --unique --expect-sign 1)
# The same with an Ed25519 key and the test messages (LF and CRLF, folded and
# 8-bit headers, an empty body, a 185 KB body sent in several BODY chunks).
set(MILTERLOAD_MESSAGES plain-crlf.eml lf-folded.eml eightbit-nofinal.eml empty-body.eml long.eml)
list(TRANSFORM MILTERLOAD_MESSAGES PREPEND ${CMAKE_CURRENT_LIST_DIR}/../data/messages/)
add_test(NAME bench_milterload_opendkim_files
         COMMAND ${CMAKE_CURRENT_LIST_DIR}/opendkim_baseline.sh --ed25519 $<TARGET_FILE:milterload>
                 -c 3 -n 50 -t 60 --sample 2 --unique --expect-sign 1 ${MILTERLOAD_MESSAGES})
set_tests_properties(bench_milterload_opendkim_smoke bench_milterload_opendkim_files
                     PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 180)
# ---- end milterload ----

# ---- token_ceiling (daemon/workers.c helper): raw token vs hsm/ vs worker pool ----
# A program, not a test; tests/core.cmake runs it once as bench_token_ceiling_smoke.
add_executable(token_ceiling ${CMAKE_CURRENT_LIST_DIR}/token_ceiling.c)
target_link_libraries(token_ceiling dh_workers dh_hsm dh_common PkgConfig::P11KIT Threads::Threads)
# ---- end token_ceiling ----

# ---- bodyhash: streaming body canonicalization + SHA-256 vs raw SHA-256 ----
add_executable(bodyhash ${CMAKE_CURRENT_LIST_DIR}/bodyhash.c)
target_link_libraries(bodyhash dh_dkim)
# ---- end bodyhash ----
