// Dev-only: the Teams preview (/card/?host=teams). The Kaizala stand-in serves /card/MicrosoftTeams.min.js as the
// real teams-js bundle from teams/node_modules (when `npm ci` has run in teams/; after teams-offline.js) followed
// by this file, which stands in for the only two calls the page makes to Teams: app.initialize() and
// authentication.getAuthToken().
// The real ones cannot work outside Teams: initialize waits for a Teams window to answer its postMessage
// handshake (and fetches Microsoft's list of valid host origins), and getAuthToken asks that window for the
// token. Everything else stays the real library's. Without the bundle, a minimal stand-in object is made.
//
// getAuthToken mints from the stand-in's POST /v1/dev/teams-tokens. The preview URL's query drives it:
//   ?user=<id>               the demo Teams user (devserver/demo_users.json, "teams")
//   ?tenant=other|<guid>     a token for another tenant (the API answers 403)
//   ?expired=1               the first token minted is already expired (the API answers 401; the page asks again)
"use strict";
(function () {
  var params = new URLSearchParams(window.location.search);
  if (params.get("host") !== "teams") { return; }
  var OTHER_TENANT = "0b0e5f3c-7d21-4c88-9a6e-5e2d1c4b3a29";
  var initialized = false;
  var minted = 0;

  function initialize() {
    initialized = true;
    return Promise.resolve();
  }

  function getAuthToken() {
    if (!initialized) {
      return Promise.reject(new Error("The library has not yet been initialized"));  // as the real one says
    }
    var request = {};
    if (params.get("user")) { request.userId = params.get("user"); }
    var tenant = params.get("tenant");
    if (tenant) { request.tenantId = tenant === "other" ? OTHER_TENANT : tenant; }
    minted += 1;
    if (params.get("expired") === "1" && minted === 1) { request.ttlSeconds = -600; }  // past any clock skew
    return fetch("/v1/dev/teams-tokens", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(request)
    })
      .then(function (response) {
        if (!response.ok) { throw new Error("the stand-in answered " + response.status); }
        return response.json();
      })
      .then(function (answer) { return answer.token; });
  }

  var real = window.microsoftTeams;
  if (real && real.app && real.authentication && typeof real.authentication.getAuthToken === "function") {
    // The bundle's namespaces are read-only module objects: copy them with the two calls replaced.
    window.microsoftTeams = Object.assign({}, real, {
      app: Object.assign({}, real.app, { initialize: initialize }),
      authentication: Object.assign({}, real.authentication, { getAuthToken: getAuthToken }),
      preview: "teams-js"
    });
  } else {
    window.microsoftTeams = {
      app: { initialize: initialize },
      authentication: { getAuthToken: getAuthToken },
      preview: "stand-in"
    };
  }
})();
