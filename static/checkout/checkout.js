/*
 * Kassa hosted checkout: the page's own script (no framework, no inline code).
 *
 * The card number, expiry and CVC never reach Kassa. In test mode the inputs have no name, the form
 * is never submitted natively, and this script sends them straight from the browser to the PSP vault
 * (POST {vault}/v1/tokens, allowed by the page's CSP connect-src). In Stripe mode Stripe.js (loaded
 * before this script) mounts its card Element, a frame of Stripe's own, and creates a PaymentMethod.
 * Kassa receives only the token or PaymentMethod id and what the vault says about the card (brand,
 * last 4, expiry, fingerprint).
 *
 * Also: client-side checks (Luhn, expiry, CVC length by brand, brand detection; Stripe.js's own in
 * Stripe mode), errors beside each field (aria-describedby) and announced (aria-live), one submission
 * at a time, and the delayed return to the merchant on the success page.
 */
(function () {
  "use strict";

  // Brand prefixes (IIN ranges) and the number lengths and CVC length that go with them.
  var BRANDS = [
    { id: "amex", name: "American Express", pattern: /^3[47]/, lengths: [15], cvc: 4, groups: [4, 6, 5] },
    { id: "diners", name: "Diners Club", pattern: /^3(0[0-5]|[689])/, lengths: [14, 16], cvc: 3, groups: [4, 6, 4] },
    { id: "jcb", name: "JCB", pattern: /^35(2[89]|[3-8])/, lengths: [16, 17, 18, 19], cvc: 3 },
    { id: "unionpay", name: "UnionPay", pattern: /^62/, lengths: [16, 17, 18, 19], cvc: 3 },
    { id: "discover", name: "Discover", pattern: /^6(011|5|4[4-9]|22)/, lengths: [16, 19], cvc: 3 },
    { id: "mastercard", name: "Mastercard", pattern: /^(5[1-5]|2(2[2-9]|[3-6]\d|7[01]|720))/, lengths: [16], cvc: 3 },
    { id: "visa", name: "Visa", pattern: /^4/, lengths: [13, 16, 19], cvc: 3 }
  ];
  var UNKNOWN_BRAND = { id: "unknown", name: "", lengths: [12, 13, 14, 15, 16, 17, 18, 19], cvc: 3 };

  function digitsOf(value) {
    return (value || "").replace(/[\s-]/g, "");
  }

  function detectBrand(number) {
    for (var i = 0; i < BRANDS.length; i++) {
      if (BRANDS[i].pattern.test(number)) {
        return BRANDS[i];
      }
    }
    return UNKNOWN_BRAND;
  }

  function luhnValid(number) {
    var sum = 0;
    var double = false;
    for (var i = number.length - 1; i >= 0; i--) {
      var digit = number.charCodeAt(i) - 48;
      if (double) {
        digit *= 2;
        if (digit > 9) {
          digit -= 9;
        }
      }
      sum += digit;
      double = !double;
    }
    return number.length > 0 && sum % 10 === 0;
  }

  function formatNumber(number, brand) {
    var groups = brand.groups || [4, 4, 4, 4, 3];
    var out = [];
    var position = 0;
    for (var i = 0; i < groups.length && position < number.length; i++) {
      out.push(number.substr(position, groups[i]));
      position += groups[i];
    }
    if (position < number.length) {
      out.push(number.substr(position));
    }
    return out.join(" ");
  }

  // "MM / YY", "MM/YYYY", "MMYY" -> {month, year (4 digits)} or null.
  function parseExpiry(value) {
    var match = /^\s*(\d{1,2})\s*\/?\s*(\d{2}|\d{4})\s*$/.exec(value || "");
    if (!match) {
      return null;
    }
    var month = parseInt(match[1], 10);
    var year = parseInt(match[2], 10);
    if (match[2].length === 2) {
      year += 2000;
    }
    if (month < 1 || month > 12) {
      return null;
    }
    return { month: month, year: year };
  }

  function checkNumber(value) {
    var number = digitsOf(value);
    if (!number) {
      return "Enter your card number.";
    }
    if (!/^\d+$/.test(number)) {
      return "A card number has only digits.";
    }
    var brand = detectBrand(number);
    if (brand.lengths.indexOf(number.length) === -1) {
      return "This card number is incomplete or too long.";
    }
    if (!luhnValid(number)) {
      return "This card number is not valid. Check it for typing mistakes.";
    }
    return "";
  }

  function checkExpiry(value) {
    if (!(value || "").trim()) {
      return "Enter the expiry date as MM / YY.";
    }
    var expiry = parseExpiry(value);
    if (!expiry) {
      return "Enter the expiry date as MM / YY, for example 04 / 29.";
    }
    var now = new Date();
    var thisMonth = now.getFullYear() * 12 + now.getMonth();
    var cardMonth = expiry.year * 12 + (expiry.month - 1);
    if (cardMonth < thisMonth) {
      return "This card has expired.";
    }
    if (cardMonth > thisMonth + 12 * 20) {
      return "This expiry date is too far in the future.";
    }
    return "";
  }

  function checkCvc(value, brand) {
    var cvc = (value || "").trim();
    var wanted = brand.cvc;
    if (!cvc) {
      return "Enter the " + wanted + "-digit security code.";
    }
    if (!/^\d+$/.test(cvc) || cvc.length !== wanted) {
      return "The security code has " + wanted + " digits" +
        (brand.id === "amex" ? " (on the front of American Express cards)." : " (on the back of your card).");
    }
    return "";
  }

  // The page's part of a card form: button, alert, announcements, errors beside fields, the confirmation.
  // Where the card is typed and turned into a token is the card source's business (vaultCard, stripeCard).
  function initPayForm(form) {
    var button = document.getElementById("pay-button");
    var buttonLabel = button.querySelector(".pay-label");
    var idleLabel = buttonLabel.textContent;
    var status = document.getElementById("form-status");
    var alertBox = document.getElementById("form-alert");
    var submitting = false;

    var ui = {
      // An error beside a field (an input, or the container Stripe.js mounts its card frame in).
      setError: function (element, message) {
        var box = document.getElementById(element.id + "-error");
        box.textContent = message;
        box.hidden = !message;
        if (element.tagName === "INPUT") {
          element.setAttribute("aria-invalid", message ? "true" : "false");
        }
        element.closest(".field").classList.toggle("has-error", !!message);
      },
      showAlert: function (message) {
        alertBox.textContent = message;
        alertBox.hidden = !message;
      },
      announce: function (message) {
        // Clearing first makes screen readers announce the same message twice in a row, too.
        status.textContent = "";
        window.setTimeout(function () { status.textContent = message; }, 50);
      }
    };

    function setBusy(busy) {
      submitting = busy;
      button.disabled = busy;
      button.setAttribute("aria-busy", busy ? "true" : "false");
      buttonLabel.textContent = busy ? "Processing…" : idleLabel;
      form.classList.toggle("is-busy", busy);
    }

    var card = form.hasAttribute("data-stripe-key") ? stripeCard(form, ui) : vaultCard(form, ui);
    if (!card) {
      ui.showAlert("The card form could not be loaded, so nothing was charged. Please reload the page.");
      button.disabled = true;
      return;
    }

    function fail(message, field) {
      setBusy(false);
      if (field) {
        ui.setError(field, message);
        card.focus(field);
      } else {
        ui.showAlert(message);
        alertBox.focus();
      }
      ui.announce(message);
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (submitting) {
        return;  // a second click while the first is on its way does nothing
      }
      ui.showAlert("");
      if (!card.check()) {
        return;
      }
      setBusy(true);
      ui.announce("Processing your payment. Please wait.");
      card.tokenize().then(function (tokenized) {
        if (tokenized.error) {
          fail(tokenized.error, tokenized.field);
          return null;
        }
        return postJson(form.getAttribute("data-confirm-url"), { token: tokenized.token, card: tokenized.card })
          .then(function (result) {
            if (result.data.redirect) {
              // Keep the button disabled: the next page (3-D Secure, processing or result) takes over.
              window.location.assign(result.data.redirect);
              return;
            }
            var problem = result.data.error || {};
            fail(problem.message || "Something went wrong. Please try again.",
              problem.param === "card" ? card.mainField : null);
          });
      }).catch(function () {
        fail("We could not reach the payment service. Check your connection and try again.", null);
      });
    });

    // Coming back with the browser's Back button restores the page as it was: busy. Make it usable again.
    window.addEventListener("pageshow", function (event) {
      if (event.persisted) {
        setBusy(false);
      }
    });

    // A server-side message (e.g. a decline) shown on load: move focus there so it is read out.
    if (!alertBox.hidden && alertBox.textContent.trim()) {
      alertBox.focus();
    }
  }

  function postJson(url, body, headers) {
    var allHeaders = { "Content-Type": "application/json", "Accept": "application/json" };
    Object.keys(headers || {}).forEach(function (key) { allHeaders[key] = headers[key]; });
    return fetch(url, {
      method: "POST",
      headers: allHeaders,
      body: JSON.stringify(body),
      credentials: url.indexOf("/") === 0 ? "same-origin" : "omit",
      // The vault is another origin: no referrer, no cookies, no redirects to follow.
      referrerPolicy: "no-referrer",
      redirect: "error"
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        return { status: response.status, data: data };
      });
    });
  }

  // Test mode: our own inputs, checked here, sent straight to the sandbox vault (POST {vault}/v1/tokens).
  function vaultCard(form, ui) {
    var fields = {
      number: document.getElementById("card-number"),
      expiry: document.getElementById("card-expiry"),
      cvc: document.getElementById("card-cvc")
    };
    var brandLabel = document.getElementById("card-brand");

    function currentBrand() {
      return detectBrand(digitsOf(fields.number.value));
    }

    function validate(name) {
      var message = "";
      if (name === "number") {
        message = checkNumber(fields.number.value);
      } else if (name === "expiry") {
        message = checkExpiry(fields.expiry.value);
      } else {
        message = checkCvc(fields.cvc.value, currentBrand());
      }
      ui.setError(fields[name], message);
      return message;
    }

    fields.number.addEventListener("input", function () {
      var input = fields.number;
      var number = digitsOf(input.value).replace(/\D/g, "").slice(0, 19);
      var brand = detectBrand(number);
      brandLabel.textContent = brand.name ? brand.name : "";
      // Reformat only while typing at the end, so that editing in the middle keeps the caret in place.
      if (input.selectionStart === input.value.length) {
        input.value = formatNumber(number, brand);
      }
      fields.cvc.setAttribute("maxlength", String(brand.cvc));
      if (input.getAttribute("aria-invalid") === "true") {
        validate("number");
      }
    });

    fields.expiry.addEventListener("input", function (event) {
      var input = fields.expiry;
      var deleting = event.inputType && event.inputType.indexOf("delete") === 0;
      if (!deleting && input.selectionStart === input.value.length) {
        var digits = input.value.replace(/\D/g, "").slice(0, 4);
        if (digits.length === 1 && digits > "1") {
          digits = "0" + digits;
        }
        input.value = digits.length >= 2 ? digits.slice(0, 2) + " / " + digits.slice(2) : digits;
      }
      if (input.getAttribute("aria-invalid") === "true") {
        validate("expiry");
      }
    });

    fields.cvc.addEventListener("input", function () {
      if (fields.cvc.getAttribute("aria-invalid") === "true") {
        validate("cvc");
      }
    });

    ["number", "expiry", "cvc"].forEach(function (name) {
      fields[name].addEventListener("blur", function () {
        if (fields[name].value) {
          validate(name);
        }
      });
    });

    function fieldForVaultParam(param) {
      if (param === "number") { return fields.number; }
      if (param === "exp_month" || param === "exp_year") { return fields.expiry; }
      if (param === "cvc") { return fields.cvc; }
      return null;
    }

    return {
      mainField: fields.number,
      focus: function (field) { field.focus(); },
      check: function () {
        var errors = ["number", "expiry", "cvc"].filter(function (name) { return validate(name) !== ""; });
        if (errors.length) {
          fields[errors[0]].focus();
          ui.announce(errors.length === 1 ? "Please correct the highlighted field." :
            "Please correct the " + errors.length + " highlighted fields.");
          return false;
        }
        return true;
      },
      tokenize: function () {
        var expiry = parseExpiry(fields.expiry.value);
        var details = {
          number: digitsOf(fields.number.value),
          exp_month: expiry.month,
          exp_year: expiry.year,
          cvc: fields.cvc.value.trim()
        };
        return postJson(form.getAttribute("data-vault-url") + "/v1/tokens", details).then(function (vault) {
          details = null;  // the number and CVC are not kept around once the vault has them
          if (vault.status !== 201 || !vault.data.id) {
            var error = vault.data.error || {};
            return { error: error.message || "The card could not be checked. Please try again.",
                     field: fieldForVaultParam(error.param) };
          }
          var token = vault.data;
          return {
            token: token.id,
            card: {
              brand: token.card.brand,
              last4: token.card.last4,
              exp_month: token.card.exp_month,
              exp_year: token.card.exp_year,
              fingerprint: token.card.fingerprint
            }
          };
        });
      }
    };
  }

  // Stripe mode: Stripe.js mounts its card Element (a frame of Stripe's origin) and creates a
  // PaymentMethod; only its id comes to Kassa. Null when Stripe.js did not load.
  function stripeCard(form, ui) {
    if (typeof window.Stripe !== "function") {
      return null;
    }
    var stripe;
    try {
      stripe = window.Stripe(form.getAttribute("data-stripe-key"));
    } catch (error) {
      return null;
    }
    var container = document.getElementById("card-element");
    var brandLabel = document.getElementById("card-brand");
    var styles = window.getComputedStyle(document.body);
    var element = stripe.elements().create("card", {
      hidePostalCode: true,
      style: {
        base: { color: "#111827", fontFamily: styles.fontFamily, fontSize: "17px",
                "::placeholder": { color: "#6b7280" } },
        invalid: { color: "#b91c1c" }
      }
    });
    element.mount(container);

    var shown = "";
    element.on("change", function (event) {
      var brand = BRANDS.filter(function (b) { return b.id === event.brand; })[0];
      brandLabel.textContent = brand ? brand.name : "";
      var message = event.error ? event.error.message : "";
      if (message !== shown) {
        shown = message;
        ui.setError(container, message);
        // The inputs are in Stripe's frame, out of reach of aria-describedby: say it out loud instead.
        if (message) {
          ui.announce(message);
        }
      }
    });

    return {
      mainField: container,
      focus: function () { element.focus(); },
      check: function () { return true; },  // Stripe.js checks the card when it creates the PaymentMethod
      tokenize: function () {
        return stripe.createPaymentMethod({ type: "card", card: element }).then(function (result) {
          if (result.error) {
            var error = result.error;
            // Validation and card errors are written for the shopper; the others are for developers.
            if (error.type === "validation_error" || error.type === "card_error") {
              shown = error.message;
              return { error: error.message, field: container };
            }
            return { error: "Your card could not be checked, so nothing was charged. Please try again.", field: null };
          }
          var method = result.paymentMethod;
          var details = method.card || {};
          return {
            token: method.id,
            card: { brand: details.brand, last4: details.last4, exp_month: details.exp_month,
                    exp_year: details.exp_year, fingerprint: details.fingerprint }
          };
        });
      }
    };
  }

  function initRedirect(element) {
    var url = element.getAttribute("data-redirect-url");
    var seconds = parseInt(element.getAttribute("data-redirect-seconds") || "3", 10);
    if (url) {
      window.setTimeout(function () { window.location.replace(url); }, seconds * 1000);
    }
  }

  function start() {
    var form = document.getElementById("pay-form");
    if (form) {
      initPayForm(form);
    }
    var redirect = document.querySelector("[data-redirect-url]");
    if (redirect) {
      initRedirect(redirect);
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }

  // Exposed for unit tests in the browser; nothing on the page calls these.
  window.KassaCheckout = { detectBrand: detectBrand, luhnValid: luhnValid, parseExpiry: parseExpiry,
    checkNumber: checkNumber, checkExpiry: checkExpiry, checkCvc: checkCvc };
}());
