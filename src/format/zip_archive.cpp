#include "format/zip_archive.h"

#include <algorithm>
#include <array>

#include "base/error.h"

namespace upg {

namespace {

// Signatures and fixed sizes of the records (APPNOTE.TXT 4.3).
constexpr uint32_t kLocalSig = 0x04034b50;        // local file header, 30 bytes + name + extra
constexpr uint32_t kCentralSig = 0x02014b50;      // central directory header, 46 bytes + name + extra + comment
constexpr uint32_t kEocdSig = 0x06054b50;         // end of central directory, 22 bytes + comment
constexpr uint32_t kZip64LocatorSig = 0x07064b50;  // zip64 EOCD locator, 20 bytes, just before the EOCD
constexpr uint32_t kZip64EocdSig = 0x06064b50;    // zip64 EOCD record, 56 bytes + extensible data
constexpr size_t kLocalSize = 30, kCentralSize = 46, kEocdSize = 22, kZip64LocatorSize = 20, kZip64EocdSize = 56;
constexpr uint16_t kZip64ExtraId = 0x0001;

uint16_t rd16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | p[1] << 8); }
uint32_t rd32(const uint8_t* p) { return static_cast<uint32_t>(rd16(p)) | static_cast<uint32_t>(rd16(p + 2)) << 16; }
uint64_t rd64(const uint8_t* p) { return static_cast<uint64_t>(rd32(p)) | static_cast<uint64_t>(rd32(p + 4)) << 32; }

// [off, off + len) lies inside a buffer of `size` bytes (no overflow).
bool inside(uint64_t off, uint64_t len, uint64_t size) { return off <= size && len <= size - off; }

}  // namespace

uint32_t zip_crc32(const uint8_t* data, size_t n, uint32_t crc) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ data[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

ZipArchive::ZipArchive(const uint8_t* data, size_t size, std::string what)
    : data_(data), size_(size), what_(std::move(what)) {
  parse();
}

void ZipArchive::parse() {
  const std::string& w = what_;
  UPG_CHECK(size_ >= kEocdSize, w, ": not a zip archive: ", size_, " bytes, smaller than the ", kEocdSize,
            "-byte end of central directory record (truncated?)");

  // 1. End of central directory record: the last record whose signature matches and whose comment
  //    ends exactly at the end of the file, searched backwards over at most 65535 comment bytes.
  size_t eocd = SIZE_MAX;
  const size_t lowest = size_ - kEocdSize > 0xFFFF ? size_ - kEocdSize - 0xFFFF : 0;
  for (size_t p = size_ - kEocdSize + 1; p-- > lowest;) {
    if (rd32(data_ + p) == kEocdSig && p + kEocdSize + rd16(data_ + p + 20) == size_) {
      eocd = p;
      break;
    }
  }
  UPG_CHECK(eocd != SIZE_MAX, w,
            ": not a zip archive or truncated: no end of central directory record at the end of the file");
  const uint8_t* e = data_ + eocd;
  uint64_t disk = rd16(e + 4), cd_disk = rd16(e + 6), n_disk = rd16(e + 8), n_total = rd16(e + 10);
  uint64_t cd_size = rd32(e + 12), cd_offset = rd32(e + 16);
  uint64_t cd_limit = eocd;  // the central directory must end before this offset

  // 2. Zip64: a locator just before the EOCD points to the zip64 EOCD record, whose 64-bit fields
  //    replace the 16/32-bit ones (which then hold 0xFFFF / 0xFFFFFFFF).
  if (eocd >= kZip64LocatorSize && rd32(data_ + eocd - kZip64LocatorSize) == kZip64LocatorSig) {
    const uint8_t* loc = data_ + eocd - kZip64LocatorSize;
    const uint64_t z_off = rd64(loc + 8);
    UPG_CHECK(rd32(loc + 4) == 0 && rd32(loc + 16) <= 1, w, ": multi-disk zip archives are not supported");
    UPG_CHECK(inside(z_off, kZip64EocdSize, eocd - kZip64LocatorSize) && rd32(data_ + z_off) == kZip64EocdSig, w,
              ": the zip64 end of central directory locator points to offset ", z_off,
              ", where there is no zip64 end of central directory record (damaged or truncated)");
    const uint8_t* z = data_ + z_off;
    disk = rd32(z + 16), cd_disk = rd32(z + 20), n_disk = rd64(z + 24), n_total = rd64(z + 32);
    cd_size = rd64(z + 40), cd_offset = rd64(z + 48);
    cd_limit = z_off;
  } else {
    UPG_CHECK(n_total != 0xFFFF && cd_size != 0xFFFFFFFF && cd_offset != 0xFFFFFFFF, w,
              ": the end of central directory record asks for zip64 values but there is no zip64 locator");
  }
  UPG_CHECK(disk == 0 && cd_disk == 0 && n_disk == n_total, w, ": multi-disk zip archives are not supported");
  UPG_CHECK(inside(cd_offset, cd_size, cd_limit), w, ": the central directory (offset ", cd_offset, ", ", cd_size,
            " bytes) does not lie before the end of central directory record at ", cd_limit,
            " (truncated or damaged)");
  UPG_CHECK(n_total <= kMaxEntries, w, ": ", n_total, " entries, more than the ", kMaxEntries, " allowed");
  UPG_CHECK(n_total <= cd_size / kCentralSize, w, ": ", n_total, " entries cannot fit in a central directory of ",
            cd_size, " bytes");

  // 3. Central directory headers.
  entries_.reserve(n_total);
  uint64_t pos = cd_offset;
  const uint64_t cd_end = cd_offset + cd_size;
  for (uint64_t i = 0; i < n_total; ++i) {
    UPG_CHECK(inside(pos, kCentralSize, cd_end) && rd32(data_ + pos) == kCentralSig, w, ": central directory entry ",
              i, " at offset ", pos, " is damaged (bad signature or past the directory's end)");
    const uint8_t* c = data_ + pos;
    ZipEntry z;
    z.flags = rd16(c + 8);
    z.method = rd16(c + 10);
    z.crc32 = rd32(c + 16);
    z.compressed_size = rd32(c + 20);
    z.uncompressed_size = rd32(c + 24);
    const uint16_t name_len = rd16(c + 28), extra_len = rd16(c + 30), comment_len = rd16(c + 32);
    uint64_t disk_start = rd16(c + 34);
    z.local_header_offset = rd32(c + 42);
    UPG_CHECK(inside(pos + kCentralSize, uint64_t{name_len} + extra_len + comment_len, cd_end), w,
              ": central directory entry ", i, " runs past the end of the directory");
    z.name.assign(reinterpret_cast<const char*>(c + kCentralSize), name_len);
    // Zip64 extended information: the 64-bit values of the fields that hold 0xFFFFFFFF (0xFFFF for
    // the disk number), in this order: uncompressed size, compressed size, local header offset, disk.
    const uint8_t* x = c + kCentralSize + name_len;
    for (size_t k = 0; k + 4 <= extra_len;) {
      const uint16_t id = rd16(x + k), len = rd16(x + k + 2);
      UPG_CHECK(k + 4 + len <= extra_len, w, ": entry '", z.name, "' has a damaged extra field");
      if (id == kZip64ExtraId) {
        const uint8_t* f = x + k + 4;
        size_t left = len;
        auto take64 = [&](uint64_t& v, const char* field) {
          UPG_CHECK(left >= 8, w, ": entry '", z.name, "': zip64 extra field lacks the ", field);
          v = rd64(f), f += 8, left -= 8;
        };
        if (z.uncompressed_size == 0xFFFFFFFF) take64(z.uncompressed_size, "uncompressed size");
        if (z.compressed_size == 0xFFFFFFFF) take64(z.compressed_size, "compressed size");
        if (z.local_header_offset == 0xFFFFFFFF) take64(z.local_header_offset, "local header offset");
        if (disk_start == 0xFFFF) {
          UPG_CHECK(left >= 4, w, ": entry '", z.name, "': zip64 extra field lacks the disk number");
          disk_start = rd32(f);
        }
      }
      k += 4 + len;
    }
    UPG_CHECK(disk_start == 0, w, ": entry '", z.name, "' starts on disk ", disk_start,
              "; multi-disk archives are not supported");

    // 4. The local header: only its name and extra lengths are needed, to find the data.
    UPG_CHECK(inside(z.local_header_offset, kLocalSize, cd_offset) &&
                  rd32(data_ + z.local_header_offset) == kLocalSig,
              w, ": entry '", z.name, "': no local file header at offset ", z.local_header_offset,
              " (damaged or truncated archive)");
    const uint8_t* l = data_ + z.local_header_offset;
    const uint16_t lname = rd16(l + 26), lextra = rd16(l + 28);
    const uint64_t name_at = z.local_header_offset + kLocalSize;
    UPG_CHECK(inside(name_at, uint64_t{lname} + lextra, cd_offset), w, ": entry '", z.name,
              "': local header runs into the central directory");
    UPG_CHECK(lname == name_len && std::equal(z.name.begin(), z.name.end(), data_ + name_at), w, ": entry '", z.name,
              "': the local header names another file than the central directory (damaged archive)");
    z.data_offset = name_at + lname + lextra;
    UPG_CHECK(inside(z.data_offset, z.compressed_size, cd_offset), w, ": entry '", z.name, "': its ",
              z.compressed_size, " bytes of data at offset ", z.data_offset,
              " run past the start of the central directory (truncated or damaged archive)");
    UPG_CHECK(index_.emplace(z.name, entries_.size()).second, w, ": entry '", z.name, "' appears twice");
    entries_.push_back(std::move(z));
    pos += kCentralSize + name_len + extra_len + comment_len;
  }

  // 5. No two entries may share bytes (local header through end of data).
  std::vector<const ZipEntry*> order;
  order.reserve(entries_.size());
  for (const ZipEntry& z : entries_) order.push_back(&z);
  std::sort(order.begin(), order.end(),
            [](const ZipEntry* a, const ZipEntry* b) { return a->local_header_offset < b->local_header_offset; });
  for (size_t i = 1; i < order.size(); ++i) {
    const ZipEntry& a = *order[i - 1];
    const ZipEntry& b = *order[i];
    UPG_CHECK(a.data_offset + a.compressed_size <= b.local_header_offset, w, ": entries '", a.name, "' and '", b.name,
              "' overlap (bytes ", a.local_header_offset, "..", a.data_offset + a.compressed_size, " and ",
              b.local_header_offset, "..", b.data_offset + b.compressed_size, ")");
  }
}

const ZipEntry* ZipArchive::find(std::string_view name) const {
  auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &entries_[it->second];
}

const uint8_t* ZipArchive::stored_data(const ZipEntry& e) const {
  UPG_CHECK(!(e.flags & 1), what_, ": entry '", e.name, "' is encrypted, which is not supported");
  UPG_CHECK(e.method == 0, what_, ": entry '", e.name, "' is compressed (zip method ", e.method,
            "); only stored (uncompressed) entries are supported, which is what torch.save writes");
  UPG_CHECK(e.compressed_size == e.uncompressed_size, what_, ": stored entry '", e.name, "' records ",
            e.compressed_size, " bytes in the archive but ", e.uncompressed_size, " bytes uncompressed");
  return data_ + e.data_offset;
}

bool ZipArchive::crc_matches(const ZipEntry& e) const {
  return zip_crc32(stored_data(e), e.compressed_size) == e.crc32;
}

}  // namespace upg
