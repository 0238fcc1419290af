# Writes OUT, a C++ file defining `const char* const NAME` (in namespace NS) with the text of IN.
# Usage: cmake -DIN=file -DOUT=file.cpp -DNAME=kName -DNS=upg::server -P embed_text.cmake
file(READ "${IN}" content)
string(FIND "${content}" ")UPGTEXT\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${IN} contains the raw-string delimiter )UPGTEXT\"")
endif()
file(WRITE "${OUT}.tmp" "// Generated from ${IN} by cmake/embed_text.cmake; do not edit.\nnamespace ${NS} {\nextern const char* const ${NAME};\nconst char* const ${NAME} = R\"UPGTEXT(${content})UPGTEXT\";\n}\n")
file(RENAME "${OUT}.tmp" "${OUT}")
