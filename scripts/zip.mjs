// A small, dependency-free zip writer for configure-tracker-capture's `--zip` (node has zlib but
// no zip archive writer). Deflated entries, forward-slash names, one fixed timestamp (so the
// same folder gives the same bytes), no zip64: an app zip stays far below 4 GiB and 65,535 files.
import { deflateRawSync } from 'node:zlib';

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32 (the zip and PNG one) of `bytes`. */
export function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

// 1980-01-01 00:00, the earliest time a zip can hold.
const DOS_TIME = 0;
const DOS_DATE = (0 << 9) | (1 << 5) | 1;
const UTF8_NAMES = 1 << 11;

/** Version needed (2.0), flags, method, time, date, CRC, sizes and name length, from `at`. */
function writeEntryFields(buffer, at, { method, crc, compressed, size, nameLength }) {
  buffer.writeUInt16LE(20, at);
  buffer.writeUInt16LE(UTF8_NAMES, at + 2);
  buffer.writeUInt16LE(method, at + 4);
  buffer.writeUInt16LE(DOS_TIME, at + 6);
  buffer.writeUInt16LE(DOS_DATE, at + 8);
  buffer.writeUInt32LE(crc, at + 10);
  buffer.writeUInt32LE(compressed, at + 14);
  buffer.writeUInt32LE(size, at + 18);
  buffer.writeUInt16LE(nameLength, at + 22);
}

/**
 * The bytes of a zip holding `entries` (`[{ name, data }]`, `data` a Buffer or string), in the
 * order given. Throws on a name that is absolute, has `..`, a backslash, or is repeated.
 */
export function zipBytes(entries) {
  const locals = [];
  const central = [];
  const seen = new Set();
  let offset = 0;
  for (const { name, data } of entries) {
    if (!name || name.startsWith('/') || name.includes('\\') || name.split('/').includes('..')) {
      throw new Error(`zip: bad entry name ${JSON.stringify(name)}`);
    }
    if (seen.has(name)) throw new Error(`zip: ${name} given twice`);
    seen.add(name);
    const raw = Buffer.isBuffer(data) ? data : Buffer.from(data);
    const deflated = deflateRawSync(raw, { level: 9 });
    // DHIS2 refuses an entry compressed more than 100 to 1 (a zip bomb to it): store those.
    const deflate = deflated.length < raw.length && raw.length <= 100 * deflated.length;
    const body = deflate ? deflated : raw;
    const method = deflate ? 8 : 0;
    const nameBytes = Buffer.from(name, 'utf8');
    const crc = crc32(raw);
    if (offset > 0xffffffff || raw.length > 0xffffffff) throw new Error('zip: too large (no zip64)');

    // The fields from "version needed" to the name's length are the same in both headers.
    const fields = { method, crc, compressed: body.length, size: raw.length, nameLength: nameBytes.length };
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    writeEntryFields(local, 4, fields);
    locals.push(local, nameBytes, body);

    const header = Buffer.alloc(46);
    header.writeUInt32LE(0x02014b50, 0);
    header.writeUInt16LE((3 << 8) | 20, 4); // made by: unix, 2.0
    writeEntryFields(header, 6, fields);
    header.writeUInt32LE(((0o100644 << 16) >>> 0), 38); // external attributes: a regular file, rw-r--r--
    header.writeUInt32LE(offset, 42);
    central.push(header, nameBytes);
    offset += local.length + nameBytes.length + body.length;
  }
  if (entries.length > 0xffff) throw new Error('zip: too many entries (no zip64)');
  const centralSize = central.reduce((n, b) => n + b.length, 0);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(centralSize, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, ...central, end]);
}
