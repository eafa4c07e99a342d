// The S3 part plan for tus concatenation (lib/stores/s3-concat.ts): which byte ranges of the partial
// uploads are copied server-side (UploadPartCopy) and which are streamed through tusk and merged.
import { planParts } from '../../lib/stores/s3-concat.js';

const MiB = 1024 * 1024;

describe('planParts (S3 part plan for concatenation)', () => {
  test('copies runs of at least the minimum part size, streams and merges smaller pieces', () => {
    const plan = planParts(
      [
        { key: 'a', size: 6 },
        { key: 'b', size: 2 },
        { key: 'c', size: 9 },
        { key: 'd', size: 1 },
      ],
      5,
    );
    expect(plan).toEqual([
      { kind: 'copy', piece: { key: 'a', start: 0, end: 5 } },
      { kind: 'stream', size: 5, pieces: [{ key: 'b', start: 0, end: 1 }, { key: 'c', start: 0, end: 2 }] },
      { kind: 'copy', piece: { key: 'c', start: 3, end: 8 } },
      { kind: 'stream', size: 1, pieces: [{ key: 'd', start: 0, end: 0 }] },
    ]);
    // every byte exactly once, in order
    const bytes = plan.flatMap((p) => (p.kind === 'copy' ? [p.piece] : p.pieces)).map((p) => `${p.key}${p.start}-${p.end}`);
    expect(bytes).toEqual(['a0-5', 'b0-1', 'c0-2', 'c3-8', 'd0-0']);
  });

  test('large partials are copied in ranges, none but the last below the minimum part size', () => {
    const min = 5 * MiB;
    const plan = planParts([{ key: 'big', size: 35 * MiB }, { key: 'huge', size: 70 * MiB }], min);
    const sizes = plan.map((p) => (p.kind === 'copy' ? p.piece.end - p.piece.start + 1 : p.size));
    expect(plan.every((p) => p.kind === 'copy')).toBe(true);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(105 * MiB);
    expect(sizes.every((size) => size >= min)).toBe(true);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(32 * MiB);
  });
});
