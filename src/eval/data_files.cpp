#include "eval/data_files.h"

#include <bzlib.h>

#include <cstdlib>
#include <filesystem>

#include "base/error.h"
#include "base/mapped_file.h"

namespace upg {

namespace fs = std::filesystem;

namespace {
bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::string bunzip2(const std::string& data, const std::string& path) {
  bz_stream bz{};
  UPG_CHECK(BZ2_bzDecompressInit(&bz, 0, 0) == BZ_OK, "bzip2: cannot initialise the decompressor for ", path);
  std::string out;
  std::vector<char> buf(1 << 20);
  bz.next_in = const_cast<char*>(data.data());
  bz.avail_in = static_cast<unsigned>(data.size());
  int rc = BZ_OK;
  while (true) {
    bz.next_out = buf.data();
    bz.avail_out = static_cast<unsigned>(buf.size());
    rc = BZ2_bzDecompress(&bz);
    out.append(buf.data(), buf.size() - bz.avail_out);
    check_input_size(str_cat(path, " (decompressed)"), out.size(), kMaxDataFileBytes);
    if (rc == BZ_STREAM_END) {
      // Concatenated streams (as pbzip2 writes): start the next one.
      if (bz.avail_in == 0) break;
      char* rest = bz.next_in;
      unsigned left = bz.avail_in;
      BZ2_bzDecompressEnd(&bz);
      bz = bz_stream{};
      UPG_CHECK(BZ2_bzDecompressInit(&bz, 0, 0) == BZ_OK, "bzip2: cannot initialise the decompressor for ", path);
      bz.next_in = rest;
      bz.avail_in = left;
      continue;
    }
    if (rc != BZ_OK) break;
    if (bz.avail_in == 0 && bz.avail_out != 0) {
      rc = BZ_UNEXPECTED_EOF;
      break;
    }
  }
  BZ2_bzDecompressEnd(&bz);
  UPG_CHECK(rc == BZ_STREAM_END, path, ": not a valid bzip2 file (",
            rc == BZ_UNEXPECTED_EOF ? "truncated" : str_cat("libbz2 error ", rc), ")");
  return out;
}
}  // namespace

std::string read_data_file(const std::string& path) {
  UPG_CHECK(fs::is_regular_file(path), "data file '", path, "' does not exist (or is not a regular file)");
  std::string data = read_text_file(path, kMaxDataFileBytes);
  if (ends_with(path, ".bz2")) return bunzip2(data, path);
  return data;
}

std::vector<std::vector<std::string>> parse_csv(std::string_view text, const std::string& what) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  size_t i = 0, line = 1, quote_line = 0;
  bool in_quotes = false, any = false;
  auto end_row = [&] {
    row.push_back(std::move(field));
    field.clear();
    if (!(row.size() == 1 && row[0].empty() && !any)) rows.push_back(std::move(row));
    row.clear();
    any = false;
  };
  while (i < text.size()) {
    char c = text[i];
    if (in_quotes) {
      if (c == '"') {
        if (i + 1 < text.size() && text[i + 1] == '"') {
          field += '"';
          i += 2;
          continue;
        }
        in_quotes = false;
      } else {
        if (c == '\n') ++line;
        field += c;
      }
      ++i;
      continue;
    }
    if (c == '"' && field.empty()) {
      in_quotes = true;
      any = true;
      quote_line = line;
    } else if (c == ',') {
      row.push_back(std::move(field));
      field.clear();
      any = true;
    } else if (c == '\n' || (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n')) {
      if (c == '\r') ++i;
      end_row();
      ++line;
    } else {
      field += c;
    }
    ++i;
  }
  UPG_CHECK(!in_quotes, what, ": unterminated quoted field starting on line ", quote_line);
  if (!field.empty() || !row.empty() || any) end_row();
  return rows;
}

std::vector<std::string> split_lines(std::string_view text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    size_t end = nl == std::string_view::npos ? text.size() : nl;
    std::string_view l = text.substr(start, end - start);
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    lines.emplace_back(l);
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  return lines;
}

std::vector<std::vector<std::string>> parse_tsv(std::string_view text) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& l : split_lines(text)) {
    if (l.empty()) continue;
    std::vector<std::string> f;
    size_t start = 0;
    while (true) {
      size_t tab = l.find('\t', start);
      f.push_back(l.substr(start, tab == std::string::npos ? std::string::npos : tab - start));
      if (tab == std::string::npos) break;
      start = tab + 1;
    }
    rows.push_back(std::move(f));
  }
  return rows;
}

std::string shared_data_dir() {
  std::vector<fs::path> candidates;
  if (const char* env = std::getenv("UPG_DATA_DIR"); env && *env) candidates.emplace_back(env);
  std::error_code ec;
  candidates.push_back(fs::current_path(ec) / ".." / "shared" / "data");
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) candidates.push_back(exe.parent_path() / ".." / ".." / "shared" / "data");
  for (const auto& p : candidates)
    if (fs::is_directory(p, ec)) return fs::weakly_canonical(p, ec).string();
  return "";
}

}  // namespace upg
