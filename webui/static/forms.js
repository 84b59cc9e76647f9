/* Form helpers (a file, not inline: the pages' CSP allows no inline script).
   A table field's "add a row" button copies its last row with the inputs emptied and renumbered. */
document.addEventListener('DOMContentLoaded', function () {
  document.querySelectorAll('select[data-autosubmit]').forEach(function (select) {
    select.addEventListener('change', function () { select.form.submit(); });
  });
  document.querySelectorAll('[data-add-row]').forEach(function (button) {
    button.addEventListener('click', function () {
      var body = button.parentNode.querySelector('table tbody');
      var rows = body.querySelectorAll('tr[data-row]');
      var last = rows[rows.length - 1], next = rows.length;
      var copy = last.cloneNode(true);
      copy.setAttribute('data-row', next);
      copy.classList.remove('has-error');
      copy.querySelector('.rowno').textContent = next + 1;
      copy.querySelectorAll('.field-error').forEach(function (e) { e.remove(); });
      copy.querySelectorAll('td.has-error').forEach(function (e) { e.classList.remove('has-error'); });
      copy.querySelectorAll('input, select').forEach(function (input) {
        input.name = input.name.replace(/\.\d+\./, '.' + next + '.');
        input.value = '';
        input.removeAttribute('aria-invalid');
      });
      body.appendChild(copy);
    });
  });
});
