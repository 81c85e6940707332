add_library(dh_daemon STATIC keyset.c policy.c handler.c server.c httpd.c lifesettings.c apiworker.c)
target_link_libraries(dh_daemon PUBLIC dh_workers dh_metrics dh_proto dh_signer dh_keystore
                      dh_conf PkgConfig::LIBEVENT PkgConfig::CRYPTO)
# The management API (api.c) runs the key lifecycle.
target_sources(dh_daemon PRIVATE api.c)
target_link_libraries(dh_daemon PUBLIC dh_lifecycle)

add_executable(dkimhsmd dkimhsmd.c lifetimer.c)
target_link_libraries(dkimhsmd PRIVATE dh_daemon dh_lifecycle)
set_target_properties(dkimhsmd PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
install(TARGETS dkimhsmd RUNTIME DESTINATION sbin)
