// Dedup index (the Dropbox pattern): the pipeline computes each stored object's sha256 while it
// streams it to the virus scanner, keeps it in the status record (field `sha256`), and when the
// upload becomes ready records `dedup:{<userId>}:<sha256>:<size>` -> upload id (lib/redis-keys.ts).
// POST /api/uploads/initiate with a matching sha256 and size for the same user then answers
// `{ deduplicated: true, upload_id }`. Per user on purpose: cross-user dedup would tell a user
// that someone else has a file. A client's hash is only a lookup key; the content was hashed by us.

/** Index entries stay as long as finished uploads (which never expire); a year, renewed by each hit. */
export const DEDUP_TTL_SECONDS = 365 * 86_400;
