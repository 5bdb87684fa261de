// Microturn embeddable widget (a first version; see the web issue for the full launcher and panel).
// <script src="https://HOST/widget.js" data-microturn-token-url="/my-backend/token"></script>
(() => {
  const script = document.currentScript;
  const base = new URL(script.src).origin;
  window.Microturn = {
    base,
    tokenUrl: script.dataset.microturnTokenUrl || null,
    async client() {
      const { MicroturnClient } = await import(`${base}/static/client.js`);
      let token = null;
      if (this.tokenUrl) token = (await (await fetch(this.tokenUrl, { method: "POST" })).json()).token;
      return new MicroturnClient({ baseUrl: base, token });
    },
  };
})();
