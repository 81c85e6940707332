# tests of the dkim/ module (RFC 6376, RFC 8463 format code).
#
# Each test gets TESTDATA (in-tree vectors, committed) and SHARED_TESTDATA
# (../shared/testdata, absent in a user's clone: those cases exit 77 = skip).

option(DKIMHSM_FUZZ "Build libFuzzer targets for the dkim/ parsers (needs clang)" OFF)

set(DKIM_TESTS canon msg tag record sig)
foreach(t ${DKIM_TESTS})
  add_executable(test_${t} test_${t}.c)
  target_link_libraries(test_${t} PRIVATE dh_testlib dh_dkim)
  target_compile_definitions(test_${t} PRIVATE TESTDATA="${TESTDATA}"
                                               SHARED_TESTDATA="${SHARED_TESTDATA}")
  add_test(NAME dkim_${t} COMMAND test_${t})
  set_tests_properties(dkim_${t} PROPERTIES SKIP_RETURN_CODE 77 LABELS dkim)
endforeach()

# OpenDKIM's known answers are read from ../shared only (never copied here).
add_test(NAME dkim_sig_opendkim COMMAND test_sig --opendkim)
set_tests_properties(dkim_sig_opendkim PROPERTIES SKIP_RETURN_CODE 77 LABELS dkim)

# Fuzz targets: the same entry points always run in ctest through a small
# deterministic driver (fixed inputs and seeded mutations); with DKIMHSM_FUZZ
# they are also built as real libFuzzer binaries.
set(DKIM_FUZZ_TARGETS msg tag)
foreach(t ${DKIM_FUZZ_TARGETS})
  add_executable(fuzz_${t}_driver fuzz/fuzz_${t}.c fuzz/driver.c)
  target_link_libraries(fuzz_${t}_driver PRIVATE dh_dkim)
  add_test(NAME dkim_fuzz_${t} COMMAND fuzz_${t}_driver)
  set_tests_properties(dkim_fuzz_${t} PROPERTIES LABELS dkim)
endforeach()

if(DKIMHSM_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "DKIMHSM_FUZZ needs clang: configure with -DCMAKE_C_COMPILER=clang")
  endif()
  # The library is compiled into each fuzzer so libFuzzer sees its coverage.
  set(DKIM_FUZZ_SOURCES
      ${CMAKE_SOURCE_DIR}/dkim/types.c ${CMAKE_SOURCE_DIR}/dkim/b64.c
      ${CMAKE_SOURCE_DIR}/dkim/canon.c ${CMAKE_SOURCE_DIR}/dkim/tag.c
      ${CMAKE_SOURCE_DIR}/dkim/msg.c ${CMAKE_SOURCE_DIR}/dkim/sig.c
      ${CMAKE_SOURCE_DIR}/dkim/record.c ${CMAKE_SOURCE_DIR}/common/buf.c
      ${CMAKE_SOURCE_DIR}/common/err.c)
  foreach(t ${DKIM_FUZZ_TARGETS})
    add_executable(fuzz_${t} fuzz/fuzz_${t}.c ${DKIM_FUZZ_SOURCES})
    target_compile_options(fuzz_${t} PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_options(fuzz_${t} PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_libraries(fuzz_${t} PRIVATE PkgConfig::CRYPTO)
  endforeach()
endif()
