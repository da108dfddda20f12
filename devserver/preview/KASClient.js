// Dev-only stand-in for Microsoft's KASClient.js, served by the Kaizala stand-in at /card/KASClient.js.
// It implements only what the sample card uses. ?user=<id> and ?card=<actionPackageId> on the preview URL
// choose whose token it mints (GET /v1/dev/users lists the demo users). In the Teams preview (?host=teams) it
// defines nothing, as in a real Teams tab, so the page finds teams-js instead.
"use strict";
if (new URLSearchParams(window.location.search).get("host") !== "teams") {
  window.KASClient = window.KASClient || {};
  window.KASClient.App = window.KASClient.App || {};
  window.KASClient.App.getIntegerationServiceTokenAsync = function (callback) {
    var params = new URLSearchParams(window.location.search);
    var request = {};
    if (params.get("user")) { request.userId = params.get("user"); }
    if (params.get("card")) { request.actionPackageId = params.get("card"); }
    fetch("/v1/dev/tokens", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(request)
    })
      .then(function (response) {
        if (!response.ok) { throw new Error("the stand-in answered " + response.status); }
        return response.json();
      })
      .then(function (minted) { callback(minted.token, null); },
            function (error) { callback(null, String(error && error.message)); });
  };
}
