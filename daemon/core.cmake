# The token worker pool and the /metrics registry (daemon/workers.h, metrics.h).
add_library(dh_workers STATIC workers.c)
target_link_libraries(dh_workers PUBLIC dh_hsm Threads::Threads)

add_library(dh_metrics STATIC metrics.c)
target_link_libraries(dh_metrics PUBLIC dh_common Threads::Threads m)
