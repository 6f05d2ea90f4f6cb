// Node-RED settings for running the ovbus example flow headless (tests, CI, or `npx node-red`).
// The editor is off unless NODE_RED_EDITOR=1; then it listens on 127.0.0.1 only.
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
