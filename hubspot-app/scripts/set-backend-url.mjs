// Point the card at your accoil-sync backend: writes cards/config.js and the app's permittedUrls.
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const url = (process.argv[2] || "").replace(/\/+$/, "");
if (!/^https:\/\/[^/?#]+$/.test(url)) {
  console.error("usage: npm run set-backend -- https://your-accoil-sync-host   (https, no path)");
  process.exit(2);
}
const app = join(dirname(fileURLToPath(import.meta.url)), "..", "src", "app");
const metaPath = join(app, "app-hsmeta.json");
const meta = JSON.parse(readFileSync(metaPath, "utf8"));
meta.config.permittedUrls.fetch = [url];
meta.config.permittedUrls.iframe = [url];
writeFileSync(metaPath, JSON.stringify(meta, null, 2) + "\n");
const configPath = join(app, "cards", "config.js");
const config = readFileSync(configPath, "utf8").replace(/BACKEND_URL = "[^"]*"/, `BACKEND_URL = "${url}"`);
writeFileSync(configPath, config);
console.log(`backend set to ${url} in ${configPath} and ${metaPath}`);
