# run_fuzz.cmake - one ctest test of a libFuzzer target (see tests/fuzz/CMakeLists.txt).
#
#   cmake -DMODE=fuzz -DFUZZER=bin -DSEEDS=dir -DWORK=dir -DSECONDS=n [-DDICT=file] -P run_fuzz.cmake
#     copies the seed corpus into WORK/corpus (the working corpus, in the build tree: the source
#     tree is never written), then fuzzes for SECONDS with a 10 s limit per input and 2 GB of
#     memory; crash inputs go to WORK/artifacts/.
#   cmake -DMODE=replay -DFUZZER=bin -DREGRESSIONS=dir -DSEEDS=dir -DWORK=dir -P run_fuzz.cmake
#     runs every file of REGRESSIONS once (the seed corpus when there is none yet).
#
# Fails on any nonzero exit of the fuzzer: a crash, a leak, a timeout, out of memory, or a
# sanitizer report (UBSan is built not to recover).

# inputs - the plain files of dir (no dot files, no READMEs), sorted.
function(inputs dir out)
  set(files "")
  if(IS_DIRECTORY "${dir}")
    file(GLOB all LIST_DIRECTORIES false "${dir}/*")
    foreach(f IN LISTS all)
      get_filename_component(n "${f}" NAME)
      if(NOT n MATCHES "^\\." AND NOT n MATCHES "^README")
        list(APPEND files "${f}")
      endif()
    endforeach()
    list(SORT files)
  endif()
  set(${out} "${files}" PARENT_SCOPE)
endfunction()

foreach(v FUZZER SEEDS WORK)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "run_fuzz.cmake: ${v} is not set")
  endif()
endforeach()

set(common -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 -artifact_prefix=${WORK}/artifacts/)
file(MAKE_DIRECTORY "${WORK}/artifacts")

if(MODE STREQUAL "fuzz")
  inputs("${SEEDS}" seeds)
  if(NOT seeds)
    message(FATAL_ERROR "run_fuzz.cmake: no seed corpus in ${SEEDS}")
  endif()
  file(MAKE_DIRECTORY "${WORK}/corpus")
  file(COPY ${seeds} DESTINATION "${WORK}/corpus")
  set(dict "")
  if(DICT)
    set(dict -dict=${DICT})
  endif()
  execute_process(
    COMMAND "${FUZZER}" -max_total_time=${SECONDS} ${common} -print_final_stats=1 ${dict}
            "${WORK}/corpus"
    RESULT_VARIABLE rc)
elseif(MODE STREQUAL "replay")
  inputs("${REGRESSIONS}" files)
  if(NOT files)
    message(STATUS "no regression inputs in ${REGRESSIONS}: replaying the seed corpus")
    inputs("${SEEDS}" files)
  endif()
  if(NOT files)
    message(FATAL_ERROR "run_fuzz.cmake: nothing to replay")
  endif()
  list(LENGTH files n)
  message(STATUS "replaying ${n} inputs")
  execute_process(COMMAND "${FUZZER}" ${common} ${files} RESULT_VARIABLE rc)
else()
  message(FATAL_ERROR "run_fuzz.cmake: MODE must be fuzz or replay")
endif()

if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${FUZZER} failed (${rc}); crash inputs, if any, are in ${WORK}/artifacts/")
endif()
