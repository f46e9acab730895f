/*
 * Kassa hosted checkout: the only script of the payment page (no framework, no inline code).
 *
 * The card number, expiry and CVC never reach Kassa: the inputs have no name, the form is never
 * submitted natively, and this script sends them straight from the browser to the PSP vault
 * (POST {vault}/v1/tokens, allowed by the page's CSP connect-src). Kassa receives only the token
 * and what the vault says about the card (brand, last 4, expiry, fingerprint).
 *
 * Also: client-side checks (Luhn, expiry, CVC length by brand, brand detection), errors beside each
 * field (aria-describedby) and announced (aria-live), one submission at a time, and the delayed
 * return to the merchant on the success page.
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

  function initPayForm(form) {
    var fields = {
      number: document.getElementById("card-number"),
      expiry: document.getElementById("card-expiry"),
      cvc: document.getElementById("card-cvc")
    };
    var brandLabel = document.getElementById("card-brand");
    var button = document.getElementById("pay-button");
    var buttonLabel = button.querySelector(".pay-label");
    var idleLabel = buttonLabel.textContent;
    var status = document.getElementById("form-status");
    var alertBox = document.getElementById("form-alert");
    var submitting = false;

    function currentBrand() {
      return detectBrand(digitsOf(fields.number.value));
    }

    function setError(name, message) {
      var input = fields[name];
      var box = document.getElementById(input.id + "-error");
      box.textContent = message;
      box.hidden = !message;
      input.setAttribute("aria-invalid", message ? "true" : "false");
      input.closest(".field").classList.toggle("has-error", !!message);
    }

    function showAlert(message) {
      alertBox.textContent = message;
      alertBox.hidden = !message;
    }

    function announce(message) {
      // Clearing first makes screen readers announce the same message twice in a row, too.
      status.textContent = "";
      window.setTimeout(function () { status.textContent = message; }, 50);
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
      setError(name, message);
      return message;
    }

    function setBusy(busy) {
      submitting = busy;
      button.disabled = busy;
      button.setAttribute("aria-busy", busy ? "true" : "false");
      buttonLabel.textContent = busy ? "Processing…" : idleLabel;
      form.classList.toggle("is-busy", busy);
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
      if (param === "number") { return "number"; }
      if (param === "exp_month" || param === "exp_year") { return "expiry"; }
      if (param === "cvc") { return "cvc"; }
      return null;
    }

    function fail(message, fieldName) {
      setBusy(false);
      if (fieldName) {
        setError(fieldName, message);
        fields[fieldName].focus();
      } else {
        showAlert(message);
        alertBox.focus();
      }
      announce(message);
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

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (submitting) {
        return;  // a second click while the first is on its way does nothing
      }
      showAlert("");
      var errors = ["number", "expiry", "cvc"].filter(function (name) { return validate(name) !== ""; });
      if (errors.length) {
        fields[errors[0]].focus();
        announce(errors.length === 1 ? "Please correct the highlighted field." :
          "Please correct the " + errors.length + " highlighted fields.");
        return;
      }
      setBusy(true);
      announce("Processing your payment. Please wait.");
      var expiry = parseExpiry(fields.expiry.value);
      var card = {
        number: digitsOf(fields.number.value),
        exp_month: expiry.month,
        exp_year: expiry.year,
        cvc: fields.cvc.value.trim()
      };
      postJson(form.getAttribute("data-vault-url") + "/v1/tokens", card).then(function (vault) {
        card = null;  // the number and CVC are not kept around once the vault has them
        if (vault.status !== 201 || !vault.data.id) {
          var error = vault.data.error || {};
          var field = fieldForVaultParam(error.param);
          fail(error.message || "The card could not be checked. Please try again.", field);
          return null;
        }
        var token = vault.data;
        return postJson(form.getAttribute("data-confirm-url"), {
          token: token.id,
          card: {
            brand: token.card.brand,
            last4: token.card.last4,
            exp_month: token.card.exp_month,
            exp_year: token.card.exp_year,
            fingerprint: token.card.fingerprint
          }
        }).then(function (result) {
          if (result.data.redirect) {
            // Keep the button disabled: the next page (3-D Secure, processing or result) takes over.
            window.location.assign(result.data.redirect);
            return;
          }
          var problem = result.data.error || {};
          var target = problem.param === "card" ? "number" : null;
          fail(problem.message || "Something went wrong. Please try again.", target);
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
