// Minimal EXIF reading: only "is there a GPS IFD with data?", so that the metadata step can report
// hasGps without ever parsing, let alone storing, the coordinates.

const GPS_IFD_POINTER = 0x8825;

/**
 * True when the EXIF block (as sharp's metadata().exif returns it: "Exif\0\0" + TIFF) has a GPS IFD
 * pointer in IFD0 that leads to at least one entry. Malformed data counts as "no GPS found".
 */
export function exifHasGps(exif: Buffer | undefined): boolean {
  if (!exif || exif.length < 14) return false;
  let base = 0;
  if (exif.subarray(0, 6).toString('latin1') === 'Exif\0\0') base = 6;
  const order = exif.subarray(base, base + 2).toString('latin1');
  if (order !== 'II' && order !== 'MM') return false;
  const le = order === 'II';
  const u16 = (off: number) => (off + 2 <= exif.length ? (le ? exif.readUInt16LE(off) : exif.readUInt16BE(off)) : undefined);
  const u32 = (off: number) => (off + 4 <= exif.length ? (le ? exif.readUInt32LE(off) : exif.readUInt32BE(off)) : undefined);
  const ifd0 = u32(base + 4);
  if (ifd0 === undefined) return false;
  const count = u16(base + ifd0);
  if (count === undefined) return false;
  for (let i = 0; i < count && i < 1000; i++) {
    const entry = base + ifd0 + 2 + i * 12;
    if (u16(entry) !== GPS_IFD_POINTER) continue;
    const gpsOffset = u32(entry + 8);
    if (!gpsOffset) return false;
    const gpsCount = u16(base + gpsOffset);
    return gpsCount !== undefined && gpsCount > 0;
  }
  return false;
}

/** XMP packets can carry GPS too (exif:GPSLatitude / GPSLongitude). */
export function xmpHasGps(xmp: Buffer | undefined): boolean {
  if (!xmp) return false;
  return /GPS(Latitude|Longitude)/.test(xmp.toString('utf8'));
}
