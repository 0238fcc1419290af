// Reading evaluation data files: whole-file reads with transparent bzip2 decompression (by the
// ".bz2" suffix, through libbz2), RFC 4180 CSV (MMLU) and plain tab-separated rows (GLUE), and
// where the shared evaluation data lives by default. Every error names the file (and the line).
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace upg {

// Contents of path; decompressed when the name ends in ".bz2". Throws Error naming the file
// when it is missing, unreadable or a corrupt bzip2 stream.
std::string read_data_file(const std::string& path);

// RFC 4180 CSV: fields separated by ',', optionally quoted with '"' ("" inside quotes is one
// quote; quoted fields may hold commas and newlines). Lines end in \n or \r\n. Empty trailing
// lines are ignored. `what` (the file name) goes into error messages (unterminated quote).
std::vector<std::vector<std::string>> parse_csv(std::string_view text, const std::string& what);

// Tab-separated rows without quoting (the GLUE .tsv files): one row per line, fields split at
// every '\t', a trailing '\r' removed, empty lines skipped.
std::vector<std::vector<std::string>> parse_tsv(std::string_view text);

// Splits text into lines at '\n' (removing a trailing '\r'); a final empty line is dropped.
std::vector<std::string> split_lines(std::string_view text);

// The shared data folder ("<repo>/../shared/data"), looked for in this order: $UPG_DATA_DIR;
// ../shared/data from the working directory; ../../shared/data from the folder of the running
// executable (a build folder inside the repository). "" when none exists.
std::string shared_data_dir();

}  // namespace upg
