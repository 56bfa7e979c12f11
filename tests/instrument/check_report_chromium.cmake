# CTest: `dots1 trace` the embedded model (as is, and with an expert ablated), `dots1 report` one trace and
# `dots1 report --compare` both, then open the pages in headless Chromium and check that
#   - the screenshots are PNGs of the requested 1200x2000 window whose size is far above a blank page's
#     (a page that failed to draw compresses to almost nothing);
#   - in the live DOM every <svg> has a non-empty layout box and drawn shapes (a probe script is appended to a
#     copy of each page: the pages themselves carry no JavaScript), and their number is the one the page
#     announces in <meta name="dots1-svg-count">.
# Variables: TOOL, MODEL, CHROMIUM (empty or *-NOTFOUND: the test is skipped), WORK_DIR.
if(NOT CHROMIUM OR CHROMIUM MATCHES "NOTFOUND$")
  message(STATUS "SKIPPED: no chromium found (Debian: apt-get install chromium; cmake/install-deps.sh installs it)")
  return()
endif()
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

function(run)
  execute_process(COMMAND ${ARGN} OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc TIMEOUT 120)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " cmd "${ARGN}")
    message(FATAL_ERROR "${cmd}\nexited with ${rc}:\n${out}\n${err}")
  endif()
  set(run_out "${out}" PARENT_SCOPE)
endfunction()

set(prompt "And God said unto Moses, Let there be light: and there was light. And the LORD spake unto Aaron")
run("${TOOL}" trace --model "${MODEL}" --prompt "${prompt}" --out "${WORK_DIR}/a.safetensors")
run("${TOOL}" trace --model "${MODEL}" --prompt "${prompt}" --out "${WORK_DIR}/b.safetensors" --no-residual --zero-expert 2:3 --forbid-expert 3:5)
run("${TOOL}" report "${WORK_DIR}/a.safetensors" --out "${WORK_DIR}/report.html")
run("${TOOL}" report --compare "${WORK_DIR}/a.safetensors" "${WORK_DIR}/b.safetensors" --out "${WORK_DIR}/compare.html")
file(WRITE "${WORK_DIR}/blank.html" "<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body></body></html>\n")

set(chrome "${CHROMIUM}" --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run --disable-extensions
           "--user-data-dir=${WORK_DIR}/chromium-profile")
set(probe [=[<script>
(function () {
  var svgs = document.querySelectorAll('svg'), drawn = 0, shapes = 0;
  for (var i = 0; i < svgs.length; i++) {
    var box = svgs[i].getBBox(), rect = svgs[i].getBoundingClientRect(), n = svgs[i].querySelectorAll('rect,line').length;
    shapes += n;
    if (box.width > 0 && box.height > 0 && rect.width > 0 && rect.height > 0 && n > 0) drawn++;
  }
  var p = document.createElement('pre');
  p.id = 'dots1-probe';
  p.textContent = 'svgs=' + svgs.length + ' drawn=' + drawn + ' shapes=' + shapes;
  document.body.appendChild(p);
})();
</script>]=])

# width and height from the PNG's IHDR chunk
function(png_size file out_w out_h)
  file(READ "${file}" head LIMIT 24 HEX)
  string(SUBSTRING "${head}" 0 16 signature)
  if(NOT signature STREQUAL "89504e470d0a1a0a")
    message(FATAL_ERROR "${file} is not a PNG (starts with ${signature})")
  endif()
  string(SUBSTRING "${head}" 32 8 w)
  string(SUBSTRING "${head}" 40 8 h)
  math(EXPR w "0x${w}")
  math(EXPR h "0x${h}")
  set(${out_w} ${w} PARENT_SCOPE)
  set(${out_h} ${h} PARENT_SCOPE)
endfunction()

run(${chrome} "--screenshot=${WORK_DIR}/blank.png" --window-size=1200,2000 "file://${WORK_DIR}/blank.html")
file(SIZE "${WORK_DIR}/blank.png" blank_size)

foreach(page report compare)
  # screenshot
  run(${chrome} "--screenshot=${WORK_DIR}/${page}.png" --window-size=1200,2000 "file://${WORK_DIR}/${page}.html")
  if(NOT EXISTS "${WORK_DIR}/${page}.png")
    message(FATAL_ERROR "chromium wrote no screenshot of ${page}.html")
  endif()
  png_size("${WORK_DIR}/${page}.png" w h)
  file(SIZE "${WORK_DIR}/${page}.png" size)
  math(EXPR ratio "${size} / ${blank_size}")
  message(STATUS "${page}.png: ${w} x ${h}, ${size} bytes (a blank page: ${blank_size} bytes, ${ratio}x)")
  if(NOT w EQUAL 1200 OR NOT h EQUAL 2000)
    message(FATAL_ERROR "${page}.png is ${w} x ${h}, expected 1200 x 2000")
  endif()
  if(ratio LESS 4)
    message(FATAL_ERROR "${page}.png (${size} bytes) is not much larger than a blank page (${blank_size} bytes): nothing drawn?")
  endif()
  # the live DOM, probed
  file(READ "${WORK_DIR}/${page}.html" html)
  string(REGEX MATCH "<meta name=\"dots1-svg-count\" content=\"([0-9]+)\">" _ "${html}")
  set(announced "${CMAKE_MATCH_1}")
  if(announced STREQUAL "" OR announced LESS 3)
    message(FATAL_ERROR "${page}.html announces '${announced}' SVG plots")
  endif()
  string(FIND "${html}" "<script" has_script)
  if(NOT has_script EQUAL -1)
    message(FATAL_ERROR "${page}.html carries JavaScript")
  endif()
  string(REPLACE "</body>" "${probe}</body>" probed "${html}")
  file(WRITE "${WORK_DIR}/${page}.probe.html" "${probed}")
  run(${chrome} --dump-dom "file://${WORK_DIR}/${page}.probe.html")
  string(REGEX MATCH "svgs=([0-9]+) drawn=([0-9]+) shapes=([0-9]+)" probe_line "${run_out}")
  if(probe_line STREQUAL "")
    message(FATAL_ERROR "the DOM of ${page}.probe.html has no probe result:\n${run_out}")
  endif()
  set(svgs ${CMAKE_MATCH_1})
  set(drawn ${CMAKE_MATCH_2})
  set(shapes ${CMAKE_MATCH_3})
  message(STATUS "${page}.html in chromium: ${probe_line} (the page announces ${announced})")
  if(NOT svgs EQUAL announced OR NOT drawn EQUAL svgs OR shapes LESS svgs)
    message(FATAL_ERROR "${page}.html: ${svgs} <svg> in the DOM, ${drawn} of them drawn, ${shapes} shapes; expected ${announced} drawn plots")
  endif()
endforeach()
