// The page's entry: sign-in, the views by URL hash (#/, #/jobs/ID, #/admin), sign-out.
import { ApiError, forgetKey, getJson, storedKey, storeKey } from "./api.js";
import { h } from "./dom.js";
import { renderHome } from "./home.js";
import { renderJob } from "./job.js";
import { renderAdmin } from "./admin.js";

const main = document.getElementById("main");
let isAdmin = false;
let leaving = null; // aborts the live streams and timers of the view on screen

/** Who the stored key is: null if it is refused; throws when the API cannot say. */
async function whoAmI(key) {
  try {
    await getJson("/jobs?limit=1", { key });
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return null;
    throw error;
  }
  try {
    await getJson("/admin/errors?limit=1", { key });
    return { admin: true };
  } catch (error) {
    if (error instanceof ApiError && error.status === 403) return { admin: false };
    throw error;
  }
}

function showNav(signedIn) {
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("nav-admin").hidden = !(signedIn && isAdmin);
}

function renderSignIn(message) {
  showNav(false);
  const input = h("input", {
    id: "api-key",
    type: "password",
    name: "api-key",
    autocomplete: "current-password",
    required: true,
    "aria-describedby": "sign-in-help" + (message ? " sign-in-error" : ""),
  });
  const error = message ? h("p.error", { id: "sign-in-error", role: "alert" }, message) : null;
  const button = h("button", { type: "submit" }, "Sign in");
  const form = h(
    "form.card.sign-in",
    {
      on: {
        submit: async (event) => {
          event.preventDefault();
          button.disabled = true;
          const key = input.value.trim();
          try {
            const who = await whoAmI(key);
            if (who === null) {
              renderSignIn("That API key was not accepted: check it and try again.");
              return;
            }
            storeKey(key);
            isAdmin = who.admin;
            route();
          } catch (failure) {
            renderSignIn(`The API could not check the key: ${failure.message}`);
          }
        },
      },
    },
    h("h1", {}, "Sign in"),
    h("label", { for: "api-key" }, "API key"),
    input,
    h("p.help", { id: "sign-in-help" }, "The key is kept in this browser only (localStorage) until you sign out."),
    error,
    button,
  );
  main.replaceChildren(form);
  input.focus();
}

async function route() {
  leaving?.abort();
  leaving = new AbortController();
  const key = storedKey();
  if (!key) {
    renderSignIn();
    return;
  }
  showNav(true);
  const hash = location.hash || "#/";
  const job = hash.match(/^#\/jobs\/([0-9a-f-]{36})$/);
  const context = { main, signal: leaving.signal, isAdmin, signOut };
  try {
    if (job) await renderJob(context, job[1]);
    else if (hash === "#/admin") await renderAdmin(context);
    else await renderHome(context);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      forgetKey();
      renderSignIn("The API key is no longer accepted. Sign in again.");
      return;
    }
    if (leaving.signal.aborted) return;
    main.replaceChildren(h("div.card", {}, h("h1", {}, "Something went wrong"), h("p.error", { role: "alert" }, error.message)));
  }
}

function signOut() {
  forgetKey();
  isAdmin = false;
  location.hash = "#/";
  route();
}

async function start() {
  document.getElementById("sign-out").addEventListener("click", signOut);
  window.addEventListener("hashchange", route);
  const key = storedKey();
  if (key) {
    try {
      const who = await whoAmI(key);
      if (who === null) {
        forgetKey();
        renderSignIn("The stored API key is no longer accepted. Sign in again.");
        return;
      }
      isAdmin = who.admin;
    } catch (error) {
      main.replaceChildren(h("p.error", { role: "alert" }, `The API cannot be reached: ${error.message}`));
      return;
    }
  }
  route();
}

start();
