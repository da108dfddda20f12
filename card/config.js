// Where the card's API lives. `make package API_URL=https://<app>.azurewebsites.net` fills this in for upload;
// the local preview (http://127.0.0.1:7072/card/) serves its own config.js pointing at devserver.
window.CARD_CONFIG = { apiBaseUrl: "https://YOUR-FUNCTION-APP.azurewebsites.net" };
