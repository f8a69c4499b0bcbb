// Checks that a PNG screenshot shows something: a webview screenshotted
// before its first paint is one flat colour, and such a file proves nothing.

import zlib from 'node:zlib';

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/**
 * Counts the distinct byte values in the PNG's decompressed image data.
 * A flat image gives very few (its colour plus the per-row filter bytes),
 * while a screen with text gives dozens.
 */
export function distinctImageBytes(png) {
  if (!png.subarray(0, 8).equals(SIGNATURE)) throw new Error('the screenshot is not a PNG file');
  const chunks = [];
  let offset = 8;
  while (offset + 8 <= png.length) {
    const length = png.readUInt32BE(offset);
    const type = png.toString('latin1', offset + 4, offset + 8);
    if (type === 'IDAT') chunks.push(png.subarray(offset + 8, offset + 8 + length));
    if (type === 'IEND') break;
    // Length, type, data and CRC.
    offset += 12 + length;
  }
  const pixels = zlib.inflateSync(Buffer.concat(chunks));
  return new Set(pixels).size;
}
