// jemalloc's options for the binaries that link it (third_party:jemalloc),
// read by jemalloc at its start: this definition takes the place of the
// library's weak one.
//
// - background_thread, one: a thread of jemalloc's own gives unused pages
//   back to the system, not the threads that allocate (the workers);
// - dirty_decay_ms 1000: pages freed go back within about a second (the
//   default, 10 s, keeps a burst's memory that long, and only while the
//   same arena allocates again); muzzy_decay_ms 0: released at once
//   (MADV_DONTNEED), not left counted in the RSS (MADV_FREE).
//
// common/memory_trimmer.cc purges every arena at once after a burst, as
// malloc_trim does for glibc's malloc.
extern "C" {
// NOLINTNEXTLINE: the name and type jemalloc looks for.
extern const char* const malloc_conf;
const char* const malloc_conf =
    "background_thread:true,max_background_threads:1,dirty_decay_ms:1000,"
    "muzzy_decay_ms:0";
}
