// Product Picker: one page for two hosts. In a Kaizala card it gets a Kaizala Integration Service token from
// KASClient; in a Microsoft Teams tab, an Entra ID token from teams-js (microsoftTeams.authentication.getAuthToken).
// It calls our API with the token, fills the dropdown and shows who is signed in.
// The token goes only into the Authorization header: never into a URL, the page, or the console.
"use strict";

(function () {
  var config = window.CARD_CONFIG || {};
  var apiBaseUrl = String(config.apiBaseUrl || "").replace(/\/+$/, "");
  // Teams answers app.initialize() at once inside Teams; outside it (the page opened alone) nothing answers.
  var TEAMS_INIT_TIMEOUT_MS = 15000;

  function byId(id) { return document.getElementById(id); }

  function CardError(kind, message, retryable) {
    this.kind = kind;
    this.message = message;
    this.retryable = retryable;
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
      return new Promise(function (resolve, reject) {
        var app = kaizalaSdk();
        // The SDK's own spelling: "Integeration".
        app.getIntegerationServiceTokenAsync(function (token, error) {
          if (error || !token) {
            reject(new CardError("token", "Kaizala could not sign you in to this card. Try again.", true));
          } else {
            resolve(token);
          }
        });
      });
    },
    unauthorized: "Kaizala could not confirm who you are. Close the card and open it again.",
    forbidden: "This card is not allowed to use the product service. Ask your admin to allow it.",
    forbiddenHeading: "This card isn't allowed"
  };

  var teamsReady = null;

  function initializeTeams() {
    if (!teamsReady) {
      teamsReady = new Promise(function (resolve, reject) {
        var timer = setTimeout(function () { reject(new Error("timeout")); }, TEAMS_INIT_TIMEOUT_MS);
        Promise.resolve(teamsSdk().app.initialize()).then(
          function () { clearTimeout(timer); resolve(); },
          function (error) { clearTimeout(timer); reject(error); });
      });
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
      try {
        token = await teamsSdk().authentication.getAuthToken();
      } catch (ignored) {
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

  async function callApi(path) {
    var first = await token(null);
    var response = await send(path, first);
    if (response.status === 401) {
      // Expired or revoked (tokens live 30 minutes): one fresh token, one retry.
      response = await send(path, await token(first));
    }
    if (response.ok) {
      return response.json();
    }
    throw await errorFrom(response);
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
        var wait = parseInt(response.headers.get("Retry-After") || "", 10);
        var when = wait > 0 ? " in " + wait + " seconds" : " shortly";
        return new CardError("unavailable", "The sign-in service is busy. Try again" + when + ".", true);
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

  function showError(error) {
    var known = error instanceof CardError;
    showStatus(known ? error.message : "Something went wrong. Try again.", true);
    byId("retry").hidden = known && !error.retryable;
    if (!known && window.console) { console.error("Product Picker failed:", error && error.name); }
  }

  async function load() {
    byId("retry").hidden = true;
    showStatus("Loading…", false);
    var results = await Promise.allSettled([callApi("/api/ValidateToken"), callApi("/api/ProtectedApi")]);
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
    var failure = results.find(function (result) { return result.status === "rejected"; });
    if (failure) {
      showError(failure.reason);
    }
  }

  function start() {
    if (host) { document.documentElement.setAttribute("data-host", host.name); }
    byId("retry").addEventListener("click", load);
    load();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
