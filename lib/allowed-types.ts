// ALLOWED_TYPES matching, for the check at initiate (the client's declared type) and the one in
// the pipeline (the type read from the bytes): one rule for both.

/**
 * Whether `mime` matches the allow-list: exact entries ("video/mp4"), type wildcards ("image/*") or
 * "*" / "*\/*" for everything. Parameters ("audio/ogg; codecs=opus") are ignored; case-insensitive.
 */
export function isAllowedType(mime: string | undefined, allowList: readonly string[]): boolean {
  if (!mime) return false;
  const base = mime.split(';')[0]!.trim().toLowerCase();
  const [type, subtype] = base.split('/');
  if (!type || !subtype) return false;
  return allowList.some((entry) => {
    const e = entry.split(';')[0]!.trim().toLowerCase();
    if (e === '*' || e === '*/*') return true;
    if (e.endsWith('/*')) return e.slice(0, -2) === type;
    return e === base;
  });
}
