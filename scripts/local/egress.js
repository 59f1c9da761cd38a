// Outbound fetches of the function workers. A request for the API host
// (SUPABASE_URL) is handed to the gateway in-process, as Supabase's edge
// runtime reaches its gateway internally; anything else goes to the network.
// A separate worker, so the public gateway never forwards to arbitrary hosts.
export default {
  fetch(request, env) {
    const url = new URL(request.url);
    if (url.host === env.API_HOST) return env.GATEWAY.fetch(request);
    return env.NETWORK.fetch(request);
  },
};
