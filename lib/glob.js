'use strict';

/** A Redis glob pattern matching `text` literally. */
function globEscape(text) {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}

module.exports = { globEscape };
