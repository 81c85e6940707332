# The agent protocol (docs/PROTOCOL.md): frames with no socket in sight
# (dh_proto, shared by dkimhsmd, every client and the fuzzer) and the client's
# connection pool (dh_agentc, for dkimhsm-milter and dkimhsm-sign --agent).
add_library(dh_proto STATIC proto.c)
target_link_libraries(dh_proto PUBLIC dh_common)

add_library(dh_agentc STATIC client.c)
target_link_libraries(dh_agentc PUBLIC dh_proto Threads::Threads)
