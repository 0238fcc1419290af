// A read-only zip archive held in memory (normally a memory-mapped file): the central directory is
// parsed and validated when the archive is opened; entries are found by name; the bytes of an entry
// stored without compression (method 0) are handed out in place, as a pointer into the caller's
// memory.
//
// Why our own reader instead of libzip: torch.save (>= 1.6) writes pytorch_model.bin as a zip whose
// tensor storages are STORED entries aligned to 64 bytes, exactly so that they can be used in place
// from a memory mapping, like safetensors data. Debian's libzip (and minizip) only copy an entry
// out through their read calls and do not expose where its data lies in the file; a reader of stored
// entries that only has to locate data is small, and every length it reads is checked here.
//
// What is read (APPNOTE.TXT 6.3): the end of central directory record (EOCD, searched backwards over
// at most 22 + 65535 bytes, the largest archive comment), the zip64 EOCD locator and record when
// present (archives above 4 GiB or 65535 entries), every central directory header with its zip64
// extra field, and each entry's local header (only to find where its data starts: after the local
// name and extra field, whose lengths may differ from the central ones; torch pads the local extra
// field to align data).
//
// Validation (each a upg::Error naming the archive and the entry): records inside the file; one
// disk only; central directory before the EOCD; entry data inside the file and before the central
// directory; local header signature and name equal to the central one; no two entries with the
// same name; no two entries overlapping (local header + data), which rules out zip bombs built from
// overlapping entries; at most kMaxEntries entries. Compression and encryption are not refused on
// open (a reader may not need that entry), but stored_data() refuses them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace upg {

struct ZipEntry {
  std::string name;
  uint16_t flags = 0;   // general purpose bit flag (bit 0: encrypted, bit 3: data descriptor)
  uint16_t method = 0;  // 0 = stored, 8 = deflate, ...
  uint32_t crc32 = 0;
  uint64_t compressed_size = 0;
  uint64_t uncompressed_size = 0;
  uint64_t local_header_offset = 0;
  uint64_t data_offset = 0;  // first byte of the (compressed) data in the archive
};

class ZipArchive {
 public:
  static constexpr size_t kMaxEntries = 1u << 20;

  // Parses the archive in [data, data + size); the memory is not copied and must outlive this
  // object. `what` names the archive in error messages (its path). Throws Error on any problem.
  ZipArchive(const uint8_t* data, size_t size, std::string what);

  const std::string& what() const { return what_; }
  // Entries in central directory order.
  const std::vector<ZipEntry>& entries() const { return entries_; }
  // nullptr when absent.
  const ZipEntry* find(std::string_view name) const;
  // The bytes of a stored (method 0), unencrypted entry, in place. Throws Error naming the entry
  // and its method otherwise.
  const uint8_t* stored_data(const ZipEntry& e) const;
  // True when the CRC-32 of the entry's stored bytes equals the one the central directory records.
  bool crc_matches(const ZipEntry& e) const;

 private:
  void parse();
  const uint8_t* data_;
  size_t size_;
  std::string what_;
  std::vector<ZipEntry> entries_;
  std::unordered_map<std::string, size_t> index_;
};

// CRC-32 (ISO-HDLC, the zip polynomial 0xEDB88320), continuing from `crc` (0 to start).
uint32_t zip_crc32(const uint8_t* data, size_t n, uint32_t crc = 0);

}  // namespace upg
