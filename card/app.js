// Product Picker: one page for two hosts. In a Kaizala card it gets a Kaizala Integration Service token from
// KASClient; in a Microsoft Teams tab, an Entra ID token from teams-js (microsoftTeams.authentication.getAuthToken).
// It calls our API with the token, fills the dropdown and shows who is signed in.
// The token goes only into the Authorization header: never into a URL, the page, or the console.
"use strict";

(function () {
  var config = window.CARD_CONFIG || {};
  var apiBaseUrl = String(config.apiBaseUrl || "").replace(/\/+$/, "");
  // How long the host's SDK has to answer each call: Teams' app.initialize() (outside Teams nothing answers it),
  // its getAuthToken() and Kaizala's token callback. Past it the page says which host did not answer and offers Retry.
  var HOST_TIMEOUT_MS = 15000;
  // The longest Retry-After the Retry button waits for (the API sends at most 300 s).
  var MAX_RETRY_AFTER_SECONDS = 300;

  function byId(id) { return document.getElementById(id); }

  function CardError(kind, message, retryable, retryAfter) {
    this.kind = kind;
    this.message = message;
    this.retryable = retryable;
    this.retryAfter = retryAfter || 0;  // seconds the Retry button waits (a 503's Retry-After)
  }

  // `promise`, or `error` when it has not settled within HOST_TIMEOUT_MS (a late answer is then ignored).
  function withinTimeout(promise, error) {
    return new Promise(function (resolve, reject) {
      var timer = setTimeout(function () { reject(error); }, HOST_TIMEOUT_MS);
      Promise.resolve(promise).then(
        function (value) { clearTimeout(timer); resolve(value); },
        function (reason) { clearTimeout(timer); reject(reason); });
    });
  }

  // --- the host -----------------------------------------------------------------------------------------------
  // KASClient present: Kaizala (its package never carries teams-js, but a page with both is still a card).
  // Otherwise teams-js present: a Teams tab. Neither: say so instead of a blank card.

  function kaizalaSdk() {
    var app = window.KASClient && window.KASClient.App;
    return app && typeof app.getIntegerationServiceTokenAsync === "function" ? app : null;
  }

  function teamsSdk() {
    var teams = window.microsoftTeams;
    var ok = teams && teams.app && typeof teams.app.initialize === "function" &&
      teams.authentication && typeof teams.authentication.getAuthToken === "function";
    return ok ? teams : null;
  }

  var KAIZALA = {
    name: "kaizala",
    requestToken: function () {
      var answer = new Promise(function (resolve, reject) {
        var app = kaizalaSdk();
        // The SDK's own spelling: "Integeration".
        app.getIntegerationServiceTokenAsync(function (token, error) {
          if (error || typeof token !== "string" || !token) {
            reject(new CardError("token", "Kaizala could not sign you in to this card. Try again.", true));
          } else {
            resolve(token);
          }
        });
      });
      return withinTimeout(answer, new CardError("token", "Kaizala did not answer in time. Try again.", true));
    },
    unauthorized: "Kaizala could not confirm who you are. Close the card and open it again.",
    forbidden: "This card is not allowed to use the product service. Ask your admin to allow it.",
    forbiddenHeading: "This card isn't allowed"
  };

  var teamsReady = null;

  function initializeTeams() {
    if (!teamsReady) {
      // Inside a promise, so that an initialize() that throws is a rejection like any other.
      var answer = new Promise(function (resolve) { resolve(teamsSdk().app.initialize()); });
      teamsReady = withinTimeout(answer, new Error("timeout"));
      teamsReady.catch(function () { teamsReady = null; });  // a later retry initializes again
    }
    return teamsReady.catch(function () {
      throw new CardError("host", "Microsoft Teams did not answer. Open this tab in Teams and try again.", true);
    });
  }

  var TEAMS = {
    name: "teams",
    requestToken: async function () {
      await initializeTeams();
      var token = null;
      var late = new CardError("token", "Microsoft Teams did not answer in time. Try again.", true);
      try {
        token = await withinTimeout(teamsSdk().authentication.getAuthToken(), late);
      } catch (error) {
        if (error === late) { throw late; }
        token = null;  // the reason may quote Teams' answer: it stays off the page and the console
      }
      if (typeof token !== "string" || !token) {
        throw new CardError("token", "Microsoft Teams could not sign you in to this tab. Try again.", true);
      }
      return token;
    },
    unauthorized: "Microsoft Teams could not confirm who you are. Close the tab and open it again.",
    forbidden: "Your organization or account is not allowed to use the product service. Ask your admin to allow it.",
    forbiddenHeading: "Your account isn't allowed"
  };

  function detectHost() {
    if (kaizalaSdk()) { return KAIZALA; }
    if (teamsSdk()) { return TEAMS; }
    return null;
  }

  var host = detectHost();

  // --- the token ----------------------------------------------------------------------------------------------

  function requestToken() {
    if (!host) {
      return Promise.reject(new CardError(
        "sdk", "Open this page in Kaizala or Microsoft Teams: neither SDK (KASClient.js, teams-js) is loaded.", false));
    }
    return host.requestToken();
  }

  var latestToken = null;

  // The current token; `stale` is one the API just refused, so a fresh one is fetched (once for all callers).
  function token(stale) {
    if (!latestToken || (stale && latestToken.value === stale)) {
      var pending = requestToken();
      latestToken = { promise: pending, value: null };
      pending.then(function (value) { if (latestToken && latestToken.promise === pending) { latestToken.value = value; } },
                   function () { if (latestToken && latestToken.promise === pending) { latestToken = null; } });
      return pending;
    }
    return latestToken.promise;
  }

  // --- the API ------------------------------------------------------------------------------------------------

  function send(path, accessToken) {
    return fetch(apiBaseUrl + path, { headers: { Authorization: "Bearer " + accessToken } }).catch(function () {
      throw new CardError("network", "Cannot reach the product service. Check your connection and try again.", true);
    });
  }

  // The API's answer when it is what `expected` accepts; anything else (a proxy's page, another API version) is a
  // retryable error the page shows, never a TypeError that leaves it loading.
  async function callApi(path, expected) {
    var first = await token(null);
    var response = await send(path, first);
    if (response.status === 401) {
      // Expired or revoked (tokens live 30 minutes): one fresh token, one retry.
      response = await send(path, await token(first));
    }
    if (!response.ok) {
      throw await errorFrom(response);
    }
    var body;
    try { body = await response.json(); } catch (ignored) { body = undefined; }
    if (!expected(body)) {
      throw new CardError("server", "The product service sent an answer this page cannot read. Try again.", true);
    }
    return body;
  }

  function isObject(value) {
    return typeof value === "object" && value !== null && !Array.isArray(value);
  }

  function isIdentity(body) {
    return isObject(body) && (body.name === undefined || body.name === null || typeof body.name === "string");
  }

  function isProduct(product) {
    return isObject(product) && typeof product.id === "string" && typeof product.name === "string" &&
      typeof product.price === "number" && isFinite(product.price) && typeof product.currency === "string";
  }

  function isListing(body) {
    return isObject(body) && Array.isArray(body.products) && body.products.every(isProduct) &&
      typeof body.count === "number";
  }

  // Retry-After in seconds (an integer or an HTTP date), at most MAX_RETRY_AFTER_SECONDS; 0 when absent or junk.
  function retryAfterSeconds(header) {
    var text = String(header || "").trim();
    var seconds = /^\d+$/.test(text) ? parseInt(text, 10) : Math.ceil((Date.parse(text) - Date.now()) / 1000);
    return seconds > 0 ? Math.min(seconds, MAX_RETRY_AFTER_SECONDS) : 0;
  }

  async function errorFrom(response) {
    var body = {};
    try { body = await response.json(); } catch (ignored) { body = {}; }
    var message = typeof body.message === "string" ? body.message : "";
    switch (response.status) {
      case 401:
        return new CardError("unauthorized", host.unauthorized, true);
      case 403:
        return new CardError("forbidden", host.forbidden, false);
      case 503:
        var wait = retryAfterSeconds(response.headers.get("Retry-After"));
        var when = wait > 0 ? " in " + wait + " seconds" : " shortly";
        return new CardError("unavailable", "The sign-in service is busy. Try again" + when + ".", true, wait);
      default:
        return new CardError("server", message || "The product service had a problem (" + response.status + "). Try again.", true);
    }
  }

  // --- the page -----------------------------------------------------------------------------------------------

  function showStatus(text, isError) {
    var status = byId("status");
    status.textContent = text;
    status.className = isError ? "status error" : "status";
  }

  function showIdentity(identity) {
    byId("user-name").textContent = identity.name ? "Signed in as " + identity.name : "Signed in";
    var picture = byId("user-picture");
    if (typeof identity.pictureUrl === "string" && /^https?:\/\//.test(identity.pictureUrl)) {
      picture.src = identity.pictureUrl;
      picture.hidden = false;
    }
  }

  function showProducts(listing) {
    var select = byId("product");
    select.replaceChildren(new Option("Choose a product", ""));
    listing.products.forEach(function (product) {
      var label = product.name + " — " + product.price.toFixed(2) + " " + product.currency;
      select.add(new Option(label, product.id));
    });
    select.disabled = listing.products.length === 0;
    showStatus(listing.products.length ? listing.count + " products" : "No products are available.", false);
  }

  var countdown = null;

  // The Retry button: hidden, or shown and enabled at once, or shown disabled ("Try again in N s") until `wait`
  // seconds have passed (a 503's Retry-After).
  function offerRetry(visible, wait) {
    var retry = byId("retry");
    clearInterval(countdown);
    countdown = null;
    retry.hidden = !visible;
    retry.disabled = false;
    retry.textContent = "Try again";
    if (!visible || !(wait > 0)) { return; }
    var until = Date.now() + wait * 1000;
    function tick() {
      var left = Math.ceil((until - Date.now()) / 1000);
      if (left > 0) {
        retry.disabled = true;
        retry.textContent = "Try again in " + left + " s";
      } else {
        clearInterval(countdown);
        countdown = null;
        retry.disabled = false;
        retry.textContent = "Try again";
      }
    }
    tick();
    countdown = setInterval(tick, 250);
  }

  function showError(error, wait) {
    var known = error instanceof CardError;
    showStatus(known ? error.message : "Something went wrong. Try again.", true);
    offerRetry(!known || error.retryable, wait);
    if (!known && window.console) { console.error("Product Picker failed:", error && error.name); }
  }

  async function load() {
    offerRetry(false, 0);
    showStatus("Loading…", false);
    var results = await Promise.allSettled([
      callApi("/api/ValidateToken", isIdentity), callApi("/api/ProtectedApi", isListing)]);
    if (results[0].status === "fulfilled") {
      showIdentity(results[0].value);
    } else {
      // A 403 means the host did sign the user in: it is this card (Kaizala) or this tenant or user (Teams)
      // that is refused.
      var refused = results[0].reason instanceof CardError && results[0].reason.kind === "forbidden";
      byId("user-name").textContent = refused ? host.forbiddenHeading : "Not signed in";
    }
    if (results[1].status === "fulfilled") {
      showProducts(results[1].value);
    } else {
      var select = byId("product");
      select.replaceChildren(new Option("Products unavailable", ""));
      select.disabled = true;
    }
    var failures = results.filter(function (result) { return result.status === "rejected"; });
    if (failures.length) {
      // Retry waits for the longest Retry-After either call was given.
      var wait = Math.max.apply(null, failures.map(function (failure) {
        return failure.reason instanceof CardError ? failure.reason.retryAfter : 0;
      }));
      showError(failures[0].reason, wait);
    }
  }

  // Whatever goes wrong, the page ends with a message, never "Loading…" for good.
  function reload() {
    load().catch(function (error) { showError(error, 0); });
  }

  function start() {
    if (host) { document.documentElement.setAttribute("data-host", host.name); }
    byId("retry").addEventListener("click", reload);
    reload();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
