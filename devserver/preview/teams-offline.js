// Dev-only, served just before the real teams-js bundle in the card preview (/card/MicrosoftTeams.min.js).
// teams-js fetches Microsoft's list of valid Teams host origins from its CDN (res.cdn.office.net) as soon as it
// loads, falling back to a built-in list when that fails. Inside Teams that is the library's business; the
// preview and its tests never reach the internet, so here that call fails at once and the fallback is used.
"use strict";
(function () {
  var realFetch = window.fetch;
  window.fetch = function (input) {
    var url = input instanceof Request ? input.url : String(input);
    if (/^https:\/\/res\.cdn\.office\.net\//i.test(url)) {
      return Promise.reject(new TypeError("the card preview does not call Microsoft's CDN"));
    }
    return realFetch.apply(window, arguments);
  };
})();
