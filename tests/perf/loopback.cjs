// Preloaded into the Portkey gateway (node -r): its server listens on every interface by default and has
// no option for the address, so every listen() without a host is bound to 127.0.0.1 (loopback only).
const net = require("net");
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (args.length && typeof args[0] === "object" && args[0] !== null && !args[0].host) {
    args[0] = { ...args[0], host: "127.0.0.1" };
  } else if (typeof args[0] === "number" && (args.length === 1 || typeof args[1] !== "string")) {
    args.splice(1, 0, "127.0.0.1");
  }
  return listen.apply(this, args);
};
