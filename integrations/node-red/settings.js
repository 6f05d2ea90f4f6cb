// Node-RED settings for running the ovbus example flow headless (tests, CI, or `npx node-red`).
// The editor is off unless NODE_RED_EDITOR=1; then it listens on 127.0.0.1 only.
//
// Broker: OVBUS_MQTT_URL (mqtt://host:1883, or mqtts://host:8883 for TLS), else built from
// OVBUS_MQTT_HOST and OVBUS_MQTT_PORT. Over mqtts:// the broker's certificate is always verified,
// against OVBUS_TLS_CA (else the system's CAs); OVBUS_TLS_CERT and OVBUS_TLS_KEY give a client
// certificate. The flow reads these as ${...} properties, so unset ones are made empty here.
const env = process.env;
env.OVBUS_MQTT_URL = env.OVBUS_MQTT_URL ||
    `mqtt://${env.OVBUS_MQTT_HOST || "localhost"}:${env.OVBUS_MQTT_PORT || 1883}`;
for (const name of ["OVBUS_TLS_CA", "OVBUS_TLS_CERT", "OVBUS_TLS_KEY"]) {
    env[name] = env[name] || "";
}

module.exports = {
    flowFile: "flows.json",
    credentialSecret: false,
    uiHost: "127.0.0.1",
    uiPort: Number(process.env.NODE_RED_PORT || 1880),
    httpAdminRoot: process.env.NODE_RED_EDITOR === "1" ? "/" : false,
    httpNodeRoot: false,
    logging: { console: { level: process.env.NODE_RED_LOG || "info", metrics: false, audit: false } },
    editorTheme: { projects: { enabled: false } },
    functionExternalModules: false,
};
