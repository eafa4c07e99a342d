// The form of an upload id, for every way an upload is made (tus, direct, concatenation, dedup):
// 32 lowercase hex digits (128 random bits, the form @tus/utils' Uid.rand() gives too). Anything a
// request names as an upload id is checked against exactly this form before it is used anywhere,
// so no other spelling (case, encoding, dots, separators) can ever reach a store or a Redis key.
import { randomBytes } from 'node:crypto';

const UPLOAD_ID = /^[0-9a-f]{32}$/;

export function newUploadId(): string {
  return randomBytes(16).toString('hex');
}

export function isUploadId(value: unknown): value is string {
  return typeof value === 'string' && UPLOAD_ID.test(value);
}
