# Signing through dkimhsmd, shared by every keyless front end.
add_library(dh_remote_sign STATIC remote_sign.c)
target_link_libraries(dh_remote_sign PUBLIC dh_agentc dh_dkim)

add_executable(dkimhsm-milter milter.c lookup_cache.c)
target_link_libraries(dkimhsm-milter PRIVATE dh_remote_sign dh_conf ${MILTER_LIBRARY}
                      Threads::Threads)
set_target_properties(dkimhsm-milter PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
install(TARGETS dkimhsm-milter RUNTIME DESTINATION sbin)
