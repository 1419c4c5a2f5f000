/* The e2e tier's budget per test and hook: processes boot, mail flows, failovers wait out leases.
   (A project's own `testTimeout` is not read by Jest; only the global one, or this call, is.) */
jest.setTimeout(60_000);
