// The one function of proxy-addr (express's own dependency) that config/index.ts uses; the
// package ships no types.
declare module 'proxy-addr' {
  const proxyAddr: {
    /** Compiles addresses, CIDRs and the names loopback, linklocal, uniquelocal; throws TypeError on a bad entry. */
    compile(trusted: string | string[]): (address: string, hop: number) => boolean;
  };
  export default proxyAddr;
}
