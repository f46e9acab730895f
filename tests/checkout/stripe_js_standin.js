/*
 * A local stand-in for Stripe.js v3 (https://js.stripe.com/v3/), for browser tests that cannot reach
 * Stripe. It implements only what static/checkout/checkout.js uses, behaving the way Stripe.js does:
 *
 *   Stripe(publishableKey)            throws (an IntegrationError) unless given a pk_test_/pk_live_ key
 *   stripe.elements().create("card", {hidePostalCode, style})
 *   element.mount(container or "#id") an iframe from this script's origin holds the inputs, out of the
 *                                     page's reach; the container gets the StripeElement--* classes,
 *                                     and a click on <label for="<container id>"> focuses the Element
 *   element.on("change", handler)     {elementType, empty, complete, brand, value, error?}
 *   element.focus()
 *   stripe.createPaymentMethod({type: "card", card: element})
 *       -> Promise of {paymentMethod: {id: "pm_...", object: "payment_method", type: "card", card: {...}}}
 *          or {error: {type: "validation_error", code, message}} with Stripe's English messages
 *
 * The same file runs inside the frame (<origin>/v3/elements-inner-card.html, served by the test
 * fixture), where it draws the inputs, checks them and answers the page over postMessage. No network:
 * the PaymentMethod id is made up here; the test's stand-in of Stripe's API answers for it later.
 */
(function () {
  "use strict";

  var INNER_PAGE = "elements-inner-card.html";
  var BRANDS = [
    { id: "amex", pattern: /^3[47]/, length: 15, cvc: 4, groups: [4, 6, 5] },
    { id: "diners", pattern: /^3(0[0-5]|[689])/, length: 14, cvc: 3, groups: [4, 6, 4] },
    { id: "discover", pattern: /^6(011|5)/, length: 16, cvc: 3 },
    { id: "jcb", pattern: /^35/, length: 16, cvc: 3 },
    { id: "unionpay", pattern: /^62/, length: 16, cvc: 3 },
    { id: "mastercard", pattern: /^(5[1-5]|2[2-7])/, length: 16, cvc: 3 },
    { id: "visa", pattern: /^4/, length: 16, cvc: 3 }
  ];
  var UNKNOWN = { id: "unknown", length: 16, cvc: 3 };
  var MESSAGES = {
    incomplete_number: "Your card number is incomplete.",
    invalid_number: "Your card number is invalid.",
    incomplete_expiry: "Your card's expiration date is incomplete.",
    invalid_expiry_month: "Your card's expiration date is invalid.",
    invalid_expiry_year_past: "Your card's expiration year is in the past.",
    invalid_expiry_month_past: "Your card's expiration date is in the past.",
    incomplete_cvc: "Your card's security code is incomplete."
  };

  function brandOf(number) {
    for (var i = 0; i < BRANDS.length; i++) {
      if (BRANDS[i].pattern.test(number)) {
        return BRANDS[i];
      }
    }
    return UNKNOWN;
  }

  function luhn(number) {
    var sum = 0;
    for (var i = 0; i < number.length; i++) {
      var digit = +number[number.length - 1 - i];
      if (i % 2 === 1) {
        digit = digit * 2 > 9 ? digit * 2 - 9 : digit * 2;
      }
      sum += digit;
    }
    return sum % 10 === 0;
  }

  function randomId(prefix) {
    var alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    var bytes = new Uint8Array(24);
    window.crypto.getRandomValues(bytes);
    var out = prefix;
    for (var i = 0; i < bytes.length; i++) {
      out += alphabet[bytes[i] % alphabet.length];
    }
    return out;
  }

  // -- inside the frame ---------------------------------------------------------------------------------

  function runFrame() {
    var options = JSON.parse(decodeURIComponent(window.location.hash.slice(1)));
    var parentOrigin = options.parentOrigin;
    var style = (options.style || {});
    var base = style.base || {};
    var touched = { number: false, expiry: false, cvc: false };

    var css = document.createElement("style");
    css.textContent = "html,body{margin:0;padding:0;background:transparent;overflow:hidden}" +
      ".row{display:flex;gap:8px}input{border:0;outline:0;padding:0;margin:0;background:transparent;min-width:0;" +
      "line-height:24px;height:24px;font-size:" + (base.fontSize || "16px") + ";color:" + (base.color || "#32325d") +
      ";font-family:" + (base.fontFamily || "sans-serif") + "}input::placeholder{color:" +
      ((base["::placeholder"] || {}).color || "#aab7c4") + "}input[aria-invalid=true]{color:" +
      ((style.invalid || {}).color || "#fa755a") + "}#number{flex:1 1 auto}#expiry{flex:0 0 4.6em}#cvc{flex:0 0 3em}";
    document.head.appendChild(css);

    function input(id, label, placeholder, autocomplete) {
      var el = document.createElement("input");
      el.id = id;
      el.setAttribute("aria-label", label);
      el.placeholder = placeholder;
      el.autocomplete = autocomplete;
      el.inputMode = "numeric";
      el.setAttribute("aria-invalid", "false");
      return el;
    }

    var row = document.createElement("div");
    row.className = "row";
    var fields = {
      number: input("number", "Credit or debit card number", "Card number", "cc-number"),
      expiry: input("expiry", "Credit or debit card expiration date", "MM / YY", "cc-exp"),
      cvc: input("cvc", "Credit or debit card CVC/CVV", "CVC", "cc-csc")
    };
    row.appendChild(fields.number);
    row.appendChild(fields.expiry);
    row.appendChild(fields.cvc);
    document.body.appendChild(row);

    function send(message) {
      message.__stripeStandin = true;
      window.parent.postMessage(message, parentOrigin);
    }

    function digits(value) {
      return value.replace(/\D/g, "");
    }

    // The first problem of the card, in Stripe's order (number, expiry, CVC); incomplete fields count
    // only once touched, unless ``all`` (when the page asks for a PaymentMethod).
    function problem(all) {
      var number = digits(fields.number.value);
      var brand = brandOf(number);
      if (number.length >= brand.length && !luhn(number)) {
        return "invalid_number";
      }
      if (number.length < brand.length && (all || touched.number)) {
        return "incomplete_number";
      }
      var expiry = digits(fields.expiry.value);
      if (expiry.length >= 2 && (+expiry.slice(0, 2) < 1 || +expiry.slice(0, 2) > 12)) {
        return "invalid_expiry_month";
      }
      if (expiry.length === 4) {
        var now = new Date();
        var year = 2000 + +expiry.slice(2);
        if (year < now.getFullYear()) {
          return "invalid_expiry_year_past";
        }
        if (year === now.getFullYear() && +expiry.slice(0, 2) < now.getMonth() + 1) {
          return "invalid_expiry_month_past";
        }
      } else if (all || touched.expiry) {
        return "incomplete_expiry";
      }
      if (digits(fields.cvc.value).length < brand.cvc && (all || touched.cvc)) {
        return "incomplete_cvc";
      }
      return null;
    }

    function state(all) {
      var code = problem(all);
      var number = digits(fields.number.value);
      ["number", "expiry", "cvc"].forEach(function (name) {
        var bad = !!code && code.indexOf(name) !== -1;
        fields[name].setAttribute("aria-invalid", bad ? "true" : "false");
      });
      return {
        elementType: "card",
        empty: !number && !fields.expiry.value && !fields.cvc.value,
        complete: !problem(true),
        brand: number ? brandOf(number).id : "unknown",
        value: { postalCode: "" },
        error: code ? { type: "validation_error", code: code, message: MESSAGES[code] } : undefined
      };
    }

    function changed() {
      send({ event: "change", payload: state(false) });
    }

    fields.number.addEventListener("input", function () {
      var number = digits(fields.number.value);
      var brand = brandOf(number);
      number = number.slice(0, brand.length);
      var groups = brand.groups || [4, 4, 4, 4];
      var parts = [];
      var at = 0;
      for (var i = 0; i < groups.length && at < number.length; i++) {
        parts.push(number.substr(at, groups[i]));
        at += groups[i];
      }
      fields.number.value = parts.join(" ");
      if (number.length === brand.length && luhn(number)) {
        fields.expiry.focus();
      }
      changed();
    });
    fields.expiry.addEventListener("input", function (event) {
      var value = digits(fields.expiry.value).slice(0, 4);
      var deleting = event.inputType && event.inputType.indexOf("delete") === 0;
      if (value.length === 1 && value > "1") {
        value = "0" + value;
      }
      fields.expiry.value = value.length >= 2 && !deleting ? value.slice(0, 2) + " / " + value.slice(2) : value;
      if (value.length === 4) {
        fields.cvc.focus();
      }
      changed();
    });
    fields.cvc.addEventListener("input", function () {
      fields.cvc.value = digits(fields.cvc.value).slice(0, brandOf(digits(fields.number.value)).cvc);
      changed();
    });
    ["number", "expiry", "cvc"].forEach(function (name) {
      fields[name].addEventListener("focus", function () { send({ event: "focus" }); });
      fields[name].addEventListener("blur", function () {
        touched[name] = touched[name] || fields[name].value !== "";
        send({ event: "blur" });
        changed();
      });
    });

    window.addEventListener("message", function (event) {
      var data = event.data || {};
      if (event.origin !== parentOrigin || !data.__stripeStandin) {
        return;
      }
      if (data.action === "focus") {
        var first = ["number", "expiry", "cvc"].filter(function (name) {
          return fields[name].getAttribute("aria-invalid") === "true";
        })[0] || "number";
        fields[first].focus();
      } else if (data.action === "createPaymentMethod") {
        var current = state(true);
        var result;
        if (current.error) {
          result = { error: current.error };
        } else {
          var number = digits(fields.number.value);
          var expiry = digits(fields.expiry.value);
          result = {
            paymentMethod: {
              id: randomId("pm_"), object: "payment_method", type: "card", livemode: data.livemode,
              created: Math.floor(Date.now() / 1000), customer: null,
              billing_details: { address: { postal_code: null }, email: null, name: null, phone: null },
              card: { brand: brandOf(number).id, last4: number.slice(-4), exp_month: +expiry.slice(0, 2),
                      exp_year: 2000 + +expiry.slice(2), funding: "credit", country: "US" }
            }
          };
        }
        send({ event: "result", id: data.id, result: result });
      }
    });

    send({ event: "ready", height: document.documentElement.scrollHeight });
  }

  // -- on the page ----------------------------------------------------------------------------------------

  var script = document.currentScript;
  var scriptUrl = script ? script.src : "";
  var standinOrigin = scriptUrl ? new URL(scriptUrl).origin : "";

  function Element(stripe, options) {
    this.stripe = stripe;
    this.options = options || {};
    this.handlers = { change: [], focus: [], blur: [], ready: [] };
    this.frame = null;
    this.container = null;
    this.queue = [];
    this.ready = false;
  }

  Element.prototype.on = function (name, handler) {
    (this.handlers[name] = this.handlers[name] || []).push(handler);
    return this;
  };

  Element.prototype.emit = function (name, payload) {
    (this.handlers[name] || []).forEach(function (handler) { handler(payload); });
  };

  Element.prototype.post = function (message) {
    message.__stripeStandin = true;
    if (!this.ready) {
      this.queue.push(message);
      return;
    }
    this.frame.contentWindow.postMessage(message, standinOrigin);
  };

  Element.prototype.focus = function () {
    this.post({ action: "focus" });
  };

  Element.prototype.mount = function (target) {
    var container = typeof target === "string" ? document.querySelector(target) : target;
    if (!container) {
      throw new Error("IntegrationError: The selector you specified (" + target + ") applies to no DOM elements.");
    }
    var self = this;
    this.container = container;
    container.classList.add("StripeElement", "StripeElement--empty");
    var frame = document.createElement("iframe");
    frame.name = "__privateStripeFrame" + Math.floor(Math.random() * 10000);
    frame.title = "Secure card payment input frame";
    frame.setAttribute("frameborder", "0");
    frame.setAttribute("allowtransparency", "true");
    frame.setAttribute("scrolling", "no");
    frame.style.border = "0";
    frame.style.width = "100%";
    frame.style.height = "24px";
    frame.style.display = "block";
    var settings = { parentOrigin: window.location.origin, style: this.options.style || {},
                     hidePostalCode: !!this.options.hidePostalCode };
    frame.src = new URL(INNER_PAGE, scriptUrl).href + "#" + encodeURIComponent(JSON.stringify(settings));
    this.frame = frame;

    window.addEventListener("message", function (event) {
      var data = event.data || {};
      if (event.origin !== standinOrigin || event.source !== frame.contentWindow || !data.__stripeStandin) {
        return;
      }
      if (data.event === "ready") {
        frame.style.height = data.height + "px";
        self.ready = true;
        self.queue.splice(0).forEach(function (message) { frame.contentWindow.postMessage(message, standinOrigin); });
        self.emit("ready", { elementType: "card" });
      } else if (data.event === "change") {
        container.classList.toggle("StripeElement--empty", data.payload.empty);
        container.classList.toggle("StripeElement--complete", data.payload.complete);
        container.classList.toggle("StripeElement--invalid", !!data.payload.error);
        self.emit("change", data.payload);
      } else if (data.event === "focus" || data.event === "blur") {
        container.classList.toggle("StripeElement--focus", data.event === "focus");
        self.emit(data.event, { elementType: "card" });
      } else if (data.event === "result") {
        self.stripe.settle(data.id, data.result);
      }
    });
    if (container.id) {
      var label = document.querySelector('label[for="' + container.id + '"]');
      if (label) {
        label.addEventListener("click", function () { self.focus(); });
      }
    }
    container.appendChild(frame);
  };

  function Stripe(key) {
    if (!(this instanceof Stripe)) {
      return new Stripe(key);
    }
    if (typeof key !== "string" || /^(sk|rk)_/.test(key)) {
      throw new Error("IntegrationError: You should not use your secret key with Stripe.js. " +
        "Please pass a publishable key instead.");
    }
    if (!/^pk_(test|live)_/.test(key)) {
      throw new Error("IntegrationError: Invalid value for Stripe(): apiKey should be a publishable key.");
    }
    this.key = key;
    this.livemode = key.indexOf("pk_live_") === 0;
    this.pending = {};
    this.next = 1;
  }

  Stripe.prototype.elements = function () {
    var stripe = this;
    return {
      create: function (type, options) {
        if (type !== "card") {
          throw new Error("IntegrationError: the Stripe.js stand-in only has the card Element, not " + type + ".");
        }
        return new Element(stripe, options);
      }
    };
  };

  Stripe.prototype.settle = function (id, result) {
    var resolve = this.pending[id];
    delete this.pending[id];
    if (resolve) {
      resolve(result);
    }
  };

  Stripe.prototype.createPaymentMethod = function (params) {
    var stripe = this;
    if (!params || params.type !== "card" || !(params.card instanceof Element)) {
      return Promise.resolve({ error: { type: "invalid_request_error", code: "parameter_invalid",
        message: "createPaymentMethod needs {type: 'card', card: <card Element>}." } });
    }
    var id = this.next++;
    return new Promise(function (resolve) {
      stripe.pending[id] = resolve;
      params.card.post({ action: "createPaymentMethod", id: id, livemode: stripe.livemode });
    });
  };

  if (window.location.pathname.slice(-INNER_PAGE.length) === INNER_PAGE) {
    runFrame();
  } else {
    window.Stripe = Stripe;
  }
}());
