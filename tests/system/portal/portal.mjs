// The portal in headless Chromium (Debian's), driven by Playwright
// (playwright-core from npm), against a server in a test VM.
//
//   node portal.mjs BASE_URL ARTIFACTS_DIR ADMIN_TOKEN
//
// Prints DIYCLOUD PASS/FAIL lines; saves a screenshot of each page it
// checks in ARTIFACTS_DIR. The admin is boss (made by the guest); the test
// creates pia through the pages.
import { createRequire } from "node:module";
import { join } from "node:path";

const require = createRequire(process.env.NODE_PATH + "/");
const { chromium } = require("playwright-core");

const [base, artifacts, adminToken] = process.argv.slice(2);
let failures = 0;
const pass = (name) => console.log(`DIYCLOUD PASS portal: ${name}`);
const fail = (name, expected, saw) => {
  failures += 1;
  console.log(`DIYCLOUD FAIL portal: ${name}: expected ${expected}; saw ${String(saw).replace(/\s+/g, " ").slice(0, 300)}`);
};
const check = (name, ok, expected, saw) => (ok ? pass(name) : fail(name, expected, saw));

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-background-networking", "--disable-component-update"],
});
const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
const page = await context.newPage();
const shot = (name) => page.screenshot({ path: join(artifacts, `portal-${name}.png`), fullPage: true });
const text = () => page.locator("main").innerText();

async function login(user, password) {
  await page.goto(`${base}/portal/`);
  await page.fill("#f-username", user);
  await page.fill("#f-password", password);
  await Promise.all([page.waitForLoadState("load"), page.click("form.card button[type=submit]")]);
}

async function api(path) {
  const response = await fetch(`${base}${path}`, { headers: { Authorization: `Bearer ${adminToken}` } });
  return response.json();
}

try {
  // The login page, and a wrong password.
  await page.goto(`${base}/portal/`);
  check("an anonymous visit lands on the login page", page.url().endsWith("/portal/login"), "/portal/login", page.url());
  await login("boss", "not the password");
  const refused = await text();
  check("a wrong password shows the message", refused.includes("Wrong username or password."), "Wrong username or password.", refused);
  await shot("login-wrong-password");

  // The admin logs in and creates pia with limits.
  await login("boss", "boss portal pw 1");
  check("the admin logs in", page.url().endsWith("/portal/"), "/portal/", page.url());
  await page.click("text=New user");
  await page.fill("#f-username", "pia");
  await page.fill("#f-password", "pia portal pw 1");
  await page.fill("#f-full_name", "Pia Example");
  await page.fill("#f-cpu", "1");
  await page.fill("#f-memory", "300M");
  await page.fill("#f-tasks", "100");
  await Promise.all([page.waitForLoadState("load"), page.click("form.grid button[type=submit]")]);
  const created = await text();
  check("the admin creates pia with limits", page.url().includes("/portal/admin/users/pia?done=created") && created.includes("was created"), "pia's page, created", `${page.url()} ${created}`);
  await shot("user-created");

  // She is in the list with her memory.
  await page.goto(`${base}/portal/admin`);
  const row = page.locator("table.users tr", { hasText: "pia" });
  check("pia is in the user list", (await row.count()) === 1, "one row", await row.count());
  check("the list shows her memory limit", (await row.innerText()).includes("300M"), "300M", await row.innerText());

  // Her memory changes, live.
  await page.goto(`${base}/portal/admin/users/pia`);
  await page.fill("#f-memory", "400M");
  await Promise.all([page.waitForLoadState("load"), page.click("form.grid button[type=submit]")]);
  const saved = await api("/api/v1/users/pia");
  check("the admin changes her memory (the API reads 400M)", saved.memory === "400M" && page.url().includes("done=saved"), "400M, saved", `${saved.memory} ${page.url()}`);

  // Disabled, then enabled again.
  await Promise.all([page.waitForLoadState("load"), page.click("button[value=disable]")]);
  check("the admin disables her", (await api("/api/v1/users/pia")).state === "disabled", "disabled", (await api("/api/v1/users/pia")).state);
  await Promise.all([page.waitForLoadState("load"), page.click("button[value=enable]")]);
  check("the admin enables her again", (await api("/api/v1/users/pia")).state === "active", "active", (await api("/api/v1/users/pia")).state);
  await shot("user-edited");

  // The dashboard: the node's charts have samples (alice is busy meanwhile).
  await page.goto(`${base}/portal/admin`);
  const samples = await page.locator("figure.chart svg").evaluateAll((svgs) =>
    svgs.map((svg) => Number(svg.getAttribute("data-samples"))));
  check("the usage dashboard shows a chart with at least two samples", samples.some((n) => n >= 2), "a chart with >= 2 samples", JSON.stringify(samples));
  const dots = await page.locator("figure.chart svg circle.sample").count();
  check("the samples are drawn", dots >= 2, ">= 2 dots", dots);
  await shot("admin-dashboard");

  // Readable at phone width: nothing wider than the screen but the tables' own scroll boxes.
  await page.setViewportSize({ width: 375, height: 800 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth);
  check("the admin page fits a phone's width", overflow <= 376, "<= 376 px", overflow);
  await shot("admin-phone");
  await page.setViewportSize({ width: 1200, height: 900 });

  // Log out; pia logs in with the keyboard only and sees only her own page.
  await Promise.all([page.waitForLoadState("load"), page.click("header form.logout button")]);
  check("logging out ends the session", page.url().endsWith("/portal/login"), "/portal/login", page.url());
  await page.goto(`${base}/portal/login`);
  // The username field takes the focus by itself (autofocus).
  await page.waitForFunction(() => document.activeElement && document.activeElement.id === "f-username");
  await page.keyboard.type("pia");
  await page.keyboard.press("Tab");
  await page.keyboard.type("pia portal pw 1");
  await Promise.all([page.waitForLoadState("load"), page.keyboard.press("Enter")]);
  const own = await text();
  check("pia logs in with the keyboard and sees her page", page.url().endsWith("/portal/") && own.includes("Pia Example") && own.includes("400M"), "her page with 400M", own);
  const adminLink = await page.locator("nav a", { hasText: "Users and node" }).count();
  check("pia's page has no admin link", adminLink === 0, "0", adminLink);
  await shot("user-own-page");
  const forbidden = await page.goto(`${base}/portal/admin`);
  check("pia cannot open the admin pages", forbidden.status() === 403, "403", forbidden.status());
  const other = await page.goto(`${base}/portal/admin/users/alice`);
  check("pia cannot open another user's page", other.status() === 403, "403", other.status());
} catch (error) {
  fail("the browser test ran to the end", "no error", error.stack || error);
  await shot("error").catch(() => {});
} finally {
  await browser.close();
}
process.exit(failures === 0 ? 0 : 1);
