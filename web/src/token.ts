// Where the page finds the token when authentication is on: the URL fragment (#token=..., removed
// from the address bar at once), a cookie the site set (WEB_UI_TOKEN_COOKIE), or what the person
// pasted earlier in this tab (sessionStorage). Never the query string: it would reach the logs.
const KEY = 'tusk.token';

export function findToken(cookieName: string | null): string | undefined {
  const hash = new URLSearchParams(location.hash.slice(1));
  const fromHash = hash.get('token');
  if (fromHash) {
    hash.delete('token');
    const rest = hash.toString();
    history.replaceState(null, '', `${location.pathname}${location.search}${rest ? `#${rest}` : ''}`);
    remember(fromHash);
    return fromHash;
  }
  if (cookieName) {
    for (const part of document.cookie.split(';')) {
      const [name, ...value] = part.trim().split('=');
      if (name === cookieName && value.length) return decodeURIComponent(value.join('='));
    }
  }
  return sessionStorage.getItem(KEY) ?? undefined;
}

export function remember(token: string): void {
  sessionStorage.setItem(KEY, token);
}

export function forget(): void {
  sessionStorage.removeItem(KEY);
}
