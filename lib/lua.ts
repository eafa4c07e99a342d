// Redis Lua scripts live as files in lib/lua/ (each with a header naming its KEYS, ARGV and
// result), read once at start-up. A line `--! include <name>` is replaced by lib/lua/<name>.lua:
// the few helpers several scripts share (the Redis clock, a counter that never goes below zero).
import fs from 'node:fs';

const INCLUDE = /^--! include ([a-z0-9-]+)$/gm;

function read(name: string, seen: Set<string>): string {
  if (seen.has(name)) throw new Error(`lib/lua/${name}.lua includes itself`);
  const text = fs.readFileSync(new URL(`./lua/${name}.lua`, import.meta.url), 'utf8');
  return text.replace(INCLUDE, (_line, included: string) => read(included, new Set([...seen, name])));
}

/** The source of lib/lua/<name>.lua, includes resolved (for EVAL). */
export function luaScript(name: string): string {
  return read(name, new Set());
}
